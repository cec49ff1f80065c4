"""How public projects build and call `tf.estimator.BestExporter`, on both exporters.

Each test writes one project's construction and usage pattern in its own words
(named in the test's comment), runs a series of evaluations through it, and
expects the decisions the original makes: the one-line switch must not change
what a working setup exports. The fake estimator keeps these fast; the last
test runs TF-Ranking's pattern with a real Estimator and
`tf.estimator.train_and_evaluate`.
"""

import functools
import os
from typing import Any, Dict, List, Optional, Sequence

import pytest
import tensorflow as tf

from best_exporter import BestExporter, read_export_records
from tests import support

Original = tf.estimator.BestExporter
BASES = [pytest.param(BestExporter, id="best_exporter"), pytest.param(Original, id="original")]


def _evaluate(
    exporter,
    estimator,
    results: Sequence[Dict[str, Any]],
    export_path: Optional[str] = None,
    by_keyword: bool = False,
) -> List[bool]:
    """Calls export() after each evaluation as the evaluator does; which ones exported."""
    export_path = export_path or os.path.join(estimator.model_dir, "export", exporter.name)
    decisions = []
    for result in results:
        if by_keyword:
            exported = exporter.export(
                estimator=estimator,
                export_path=export_path,
                checkpoint_path=None,
                eval_result=result,
                is_the_final_export=True,
            )
        else:
            exported = exporter.export(estimator, export_path, None, result, False)
        decisions.append(exported is not None)
    return decisions


def _versions(export_path: str) -> List[str]:
    return sorted(
        n.rstrip("/") for n in tf.io.gfile.listdir(export_path) if n.rstrip("/").isdigit()
    )


def _vocabulary(directory, name: str) -> str:
    path = directory / name
    path.write_text("<blank>\n<s>\n</s>\nhello\n")
    return str(path)


def _results(metric: str, values: Sequence[float], **fixed: float) -> List[Dict[str, Any]]:
    return [
        support.eval_result(100 * (i + 1), **{metric: v}, **fixed) for i, v in enumerate(values)
    ]


# OpenNMT-tf (v1 runner): name="best", the model's vocabularies as assets_extra
# (or {} for a model without any), the default compare_fn by loss.
@pytest.mark.parametrize("with_vocabularies", [True, False], ids=["vocabularies", "no-assets"])
@pytest.mark.parametrize("base", BASES)
def test_opennmt_best_exporter_with_vocabulary_assets(
    base, with_vocabularies: bool, tmp_path
) -> None:
    assets = {}
    if with_vocabularies:
        assets = {
            "source_vocabulary.txt": _vocabulary(tmp_path, "src-vocab.txt"),
            "target_vocabulary.txt": _vocabulary(tmp_path, "tgt-vocab.txt"),
        }
    exporter = base(
        name="best",
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        assets_extra=assets,
    )
    estimator = support.FakeEstimator(str(tmp_path / "run"))

    decisions = _evaluate(exporter, estimator, _results("loss", [3.0, 2.5, 2.7, 2.0]))

    assert decisions == [True, True, False, True]
    export_path = str(tmp_path / "run" / "export" / "best")
    newest = os.path.join(export_path, _versions(export_path)[-1], "assets.extra")
    for name in assets:
        assert tf.io.gfile.exists(os.path.join(newest, name))


# tensor2tensor: a compare_fn defined inside the function that builds the
# exporter, closing over the metric, comparing with `<`.
def _t2t_exporter(base, serving_input_fn, metric: str = "loss"):
    def compare_fn(best_eval_result, current_eval_result):
        return current_eval_result[metric] < best_eval_result[metric]

    return base(name="best", serving_input_receiver_fn=serving_input_fn, compare_fn=compare_fn)


@pytest.mark.parametrize("base", BASES)
def test_tensor2tensor_nested_compare_fn(base, tmp_path) -> None:
    exporter = _t2t_exporter(base, support.serving_input_receiver_fn_stub)
    estimator = support.FakeEstimator(str(tmp_path))
    # Equal is no improvement with `<`.
    assert _evaluate(exporter, estimator, _results("loss", [1.0, 1.0, 0.9, 1.2])) == [
        True,
        False,
        True,
        False,
    ]


# bleurt (finetune.py): a positional name, a raw serving receiver, its own eval
# directory, a `<=` comparator (ties export) and exports_to_keep=1.
def _bleurt_comparator(best_eval_result, current_eval_result):
    metric = "kendalltau"
    return best_eval_result[metric] <= current_eval_result[metric]


def _bleurt_serving_input_fn_builder(seq_length: int):
    name_to_features = {
        "input_ids": tf.zeros(dtype=tf.int64, shape=[0, seq_length]),
        "input_mask": tf.zeros(dtype=tf.int64, shape=[0, seq_length]),
        "segment_ids": tf.zeros(dtype=tf.int64, shape=[0, seq_length]),
    }
    return tf.estimator.export.build_raw_serving_input_receiver_fn(name_to_features)


@pytest.mark.parametrize("base", BASES)
def test_bleurt_ties_export_and_one_export_is_kept(base, tmp_path) -> None:
    exporter = base(
        "bleurt_best",
        serving_input_receiver_fn=_bleurt_serving_input_fn_builder(128),
        event_file_pattern="eval_default/*.tfevents.*",
        compare_fn=_bleurt_comparator,
        exports_to_keep=1,
    )
    estimator = support.FakeEstimator(str(tmp_path))

    decisions = _evaluate(exporter, estimator, _results("kendalltau", [0.2, 0.2, 0.1, 0.3]))

    assert decisions == [True, True, False, True]
    assert _versions(str(tmp_path / "export" / "bleurt_best")) == ["1700000002"]


def test_bleurt_restart_values_the_original_exports_by_its_eval_directory(tmp_path) -> None:
    # A run of the original left its export and eval_default events; ours restarts on them.
    export_path = tmp_path / "export" / "bleurt_best"
    old = export_path / "1600000000"
    old.mkdir(parents=True)
    (old / "saved_model.pb").write_text("model")
    support.write_legacy_events(str(tmp_path / "eval_default"), [(100, {"kendalltau": 0.4})])
    exporter = BestExporter(
        "bleurt_best",
        serving_input_receiver_fn=_bleurt_serving_input_fn_builder(128),
        event_file_pattern="eval_default/*.tfevents.*",
        compare_fn=_bleurt_comparator,
        exports_to_keep=1,
    )
    estimator = support.FakeEstimator(str(tmp_path))
    results = [support.eval_result(200, kendalltau=0.3), support.eval_result(300, kendalltau=0.5)]
    assert _evaluate(exporter, estimator, results) == [False, True]
    assert _versions(str(export_path)) == ["1700000000"]


# TF-Ranking (extension/pipeline.py): a LatestExporter and BestExporters in one
# EvalSpec named "on_eval", reading eval_on_eval; the metric's compare_fn is a
# closure that raises ValueError naming the metrics when its metric is missing.
def _tf_ranking_exporters(base, serving_input_receiver_fn, metric: str, higher_better: bool):
    def _compare_fn(best_eval_result, current_eval_result):
        if metric not in current_eval_result:
            raise ValueError(
                "Metric `%s` does not exist! Please use any of the following: `%s`."
                % (metric, current_eval_result.keys())
            )
        return higher_better == (current_eval_result[metric] >= best_eval_result[metric])

    return [
        tf.estimator.LatestExporter(
            "latest_model", serving_input_receiver_fn=serving_input_receiver_fn
        ),
        base(
            name="best_model_by_loss",
            serving_input_receiver_fn=serving_input_receiver_fn,
            event_file_pattern="eval_on_eval/*.tfevents.*",
        ),
        base(
            name="best_model_by_metric",
            serving_input_receiver_fn=serving_input_receiver_fn,
            event_file_pattern="eval_on_eval/*.tfevents.*",
            compare_fn=_compare_fn,
        ),
    ]


@pytest.mark.parametrize("base", BASES)
def test_tf_ranking_exporters_decide_each_by_its_own_metric(base, tmp_path) -> None:
    _, by_loss, by_metric = _tf_ranking_exporters(
        base, support.serving_input_receiver_fn_stub, "metric/ndcg@5", higher_better=True
    )
    estimator = support.FakeEstimator(str(tmp_path))
    results = [
        support.eval_result(100, loss=1.0, **{"metric/ndcg@5": 0.5}),
        support.eval_result(200, loss=0.8, **{"metric/ndcg@5": 0.4}),
        support.eval_result(300, loss=0.9, **{"metric/ndcg@5": 0.5}),
    ]
    assert _evaluate(by_loss, estimator, results) == [True, True, False]
    assert _evaluate(by_metric, estimator, results) == [True, False, True]  # `>=`: ties export.


@pytest.mark.parametrize("base", BASES)
def test_tf_ranking_missing_metric_raises_its_own_message(base, tmp_path) -> None:
    *_, by_metric = _tf_ranking_exporters(
        base, support.serving_input_receiver_fn_stub, "metric/ndcg@5", higher_better=True
    )
    estimator = support.FakeEstimator(str(tmp_path))
    _evaluate(by_metric, estimator, [support.eval_result(100, loss=1.0, **{"metric/ndcg@5": 0.5})])
    with pytest.raises(ValueError, match=r"Metric `metric/ndcg@5` does not exist"):
        _evaluate(by_metric, estimator, [support.eval_result(200, loss=0.9)])


# tensor2robot (utils/train_eval.py): compare functions made by gin-configurable
# factories, two BestExporters sharing assets, and a continuous-eval loop that
# calls export() by keyword, into model_dir/<exporter.name>, with
# is_the_final_export=True.
def create_valid_result_smaller(result_key="loss"):
    def valid_result_smaller(best_eval_result, current_eval_result):
        if not best_eval_result or result_key not in best_eval_result:
            return True
        if not current_eval_result or result_key not in current_eval_result:
            return False
        return best_eval_result[result_key] > current_eval_result[result_key]

    return valid_result_smaller


@pytest.mark.parametrize("base", BASES)
def test_tensor2robot_factory_compare_fns_and_keyword_export(base, tmp_path) -> None:
    assets = {"t2r_assets.pbtxt": _vocabulary(tmp_path, "t2r_assets.pbtxt")}
    exporters = [
        base(
            name=name,
            compare_fn=create_valid_result_smaller(),
            serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
            assets_extra=assets,
        )
        for name in ("best_exporter_numpy", "best_exporter_tf_example")
    ]
    model_dir = tmp_path / "model"
    for exporter in exporters:
        estimator = support.FakeEstimator(str(model_dir))
        export_path = str(model_dir / exporter.name)
        decisions = _evaluate(
            exporter, estimator, _results("loss", [0.5, 0.6, 0.3]), export_path, by_keyword=True
        )
        assert decisions == [True, False, True]
        assert len(_versions(export_path)) == 2


# LISA (train.py): functools.partial binding the compared key of a shared
# compare function; vocabulary files as assets_extra; exports_to_keep from flags.
def best_model_compare_fn(best_eval_result, current_eval_result, key):
    return best_eval_result[key] < current_eval_result[key]


@pytest.mark.parametrize("base", BASES)
def test_lisa_partial_compare_fn(base, tmp_path) -> None:
    assets = {f"{name}.txt": _vocabulary(tmp_path, f"{name}.txt") for name in ("word", "predicate")}
    exporter = base(
        compare_fn=functools.partial(best_model_compare_fn, key="srl_f1"),
        serving_input_receiver_fn=support.serving_input_receiver_fn_stub,
        assets_extra=assets,
        exports_to_keep=2,
    )
    estimator = support.FakeEstimator(str(tmp_path / "save"))
    decisions = _evaluate(exporter, estimator, _results("srl_f1", [70.0, 72.5, 71.0, 75.0]))
    assert decisions == [True, True, False, True]
    assert len(_versions(str(tmp_path / "save" / "export" / "best_exporter"))) == 2


# HiNet (src/utils/model_exporter.py): a closure compare that raises on empty
# results, with assets_extra=None. Its comparison is the reverse of its name
# (it exports a larger loss); ours must still decide exactly as the original.
def model_best_exporter(
    base,
    model_name,
    serving_input_receiver_fn,
    assets_extra=None,
    exports_to_keep=1,
    metric_key="loss",
    big_better=False,
):
    def compare(best_eval_result, current_eval_result):
        if not best_eval_result or metric_key not in best_eval_result:
            raise ValueError("best_eval_result cannot be empty or no loss is found in it.")
        if not current_eval_result or metric_key not in current_eval_result:
            raise ValueError("current_eval_result cannot be empty or no loss is found in it.")
        if big_better:
            return best_eval_result[metric_key] > current_eval_result[metric_key]
        return best_eval_result[metric_key] < current_eval_result[metric_key]

    return base(
        name=model_name,
        serving_input_receiver_fn=serving_input_receiver_fn,
        compare_fn=compare,
        assets_extra=assets_extra,
        exports_to_keep=exports_to_keep,
    )


@pytest.mark.parametrize("base", BASES)
def test_hinet_closure_compare_with_no_assets(base, tmp_path) -> None:
    exporter = model_best_exporter(base, "hinet", support.serving_input_receiver_fn_stub)
    estimator = support.FakeEstimator(str(tmp_path))
    assert _evaluate(exporter, estimator, _results("loss", [0.5, 0.6, 0.4])) == [True, True, False]
    assert _versions(str(tmp_path / "export" / "hinet")) == ["1700000001"]


# ----------------------------------------------------------------------------
# TF-Ranking's exporters in one EvalSpec, with a real Estimator.


@pytest.mark.e2e
def test_tf_ranking_exporters_in_one_eval_spec_with_a_real_estimator(tmp_path) -> None:
    model_dir = str(tmp_path / "model")
    estimator = support.make_classifier(model_dir, save_checkpoints_steps=20)
    exporters = _tf_ranking_exporters(
        BestExporter, support.serving_input_receiver_fn, "accuracy", higher_better=True
    )
    tf.estimator.train_and_evaluate(
        estimator,
        tf.estimator.TrainSpec(support.train_input_fn, max_steps=80),
        tf.estimator.EvalSpec(
            support.eval_input_fn,
            steps=None,
            name="on_eval",
            exporters=exporters,
            start_delay_secs=0,
            throttle_secs=0,
        ),
    )
    export_base = os.path.join(model_dir, "export")
    assert sorted(tf.io.gfile.listdir(export_base)) == [
        "best_model_by_loss",
        "best_model_by_metric",
        "latest_model",
    ]
    for name, metric, better in [
        ("best_model_by_loss", "loss", lambda a, b: b < a),
        ("best_model_by_metric", "accuracy", lambda a, b: b >= a),
    ]:
        exports = read_export_records(os.path.join(export_base, name))
        assert exports, name
        values = [e.eval_result[metric] for e in exports]
        # Version order is quality order: each export improved on the one before.
        assert all(better(a, b) for a, b in zip(values, values[1:])), (name, values)
        scores = support.serve(exports[-1].path)
        assert scores.shape == (2, 2)
