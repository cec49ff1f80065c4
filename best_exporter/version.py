"""The version, in a module of its own: the build reads it without importing TensorFlow."""

__version__ = "0.1.0"
