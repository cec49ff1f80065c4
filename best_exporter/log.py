"""The library's logger.

A child of TensorFlow's logger, so that its lines appear where Estimator users
look for them (the absl/`tf.compat.v1.logging` output) and follow
`tf.compat.v1.logging.set_verbosity`, while staying filterable by name.
"""

import tensorflow as tf

logger = tf.get_logger().getChild("best_exporter")
