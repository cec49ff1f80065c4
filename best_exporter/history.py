"""Public: the eval results of tfevents files, for tools and notebooks.

    from best_exporter.history import evaluations
    for evaluation in evaluations("model_dir/eval/*.tfevents.*"):
        print(evaluation["global_step"], evaluation["loss"])

The reader itself is the core's (`best_exporter.core.history`); this module
keeps the documented import path.
"""

from best_exporter.core.history import (
    EvalHistory,
    Evaluation,
    evaluations,
    read_eval_history,
    scan_eval_history,
)

__all__ = ["EvalHistory", "Evaluation", "evaluations", "read_eval_history", "scan_eval_history"]
