import numpy as np
import pytest

from helpers.evaluation.metrics import all_metrics, confusion, task_a_metrics, task_b_metrics, write_competition_json
from helpers.inference.cached import decode


def test_hierarchical_decoding():
    prob_ai = np.array([0.2, 0.9, 0.5, 0.49])
    probs_b = np.array(
        [
            [0.0, 0.1, 0.6, 0.1, 0.1, 0.1],  # A says real: B must be real despite head B
            [0.9, 0.02, 0.02, 0.02, 0.02, 0.02],  # A says AI: B is the best AI class, never 'real'
            [0.1, 0.1, 0.1, 0.1, 0.1, 0.5],
            [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    out = decode(prob_ai, probs_b)
    assert out.label_a.tolist() == [0, 1, 1, 0]
    assert out.label_b[[0, 3]].tolist() == [0, 0] and out.label_b[2] == 5 and out.label_b[1] in (1, 2, 3, 4, 5)
    assert np.allclose(out.confidence_a, [0.8, 0.9, 0.5, 0.51])
    assert np.allclose(out.confidence_b[[0, 3]], out.confidence_a[[0, 3]])  # real rows: decided by A
    assert np.isclose(out.confidence_b[2], 0.5 / 0.9)  # renormalised over the AI classes


def test_metrics_against_hand_computed_values_with_a_class_absent_from_the_truth():
    y_b, p_b = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 3])  # SD 3 (3) is predicted, never true
    b = task_b_metrics(y_b, p_b)
    # per class (P, R, F1): real (1, 1/2, 2/3), SD 2.1 (2/3, 1, 4/5), SDXL (1, 1/2, 2/3), SD 3 (0, 0, 0)
    assert np.isclose(b["acc_b"], 4 / 6)
    assert np.isclose(b["precision_b_weighted"], (1 + 2 / 3 + 1) / 3)
    assert np.isclose(b["recall_b_weighted"], (1 / 2 + 1 + 1 / 2) / 3)
    assert np.isclose(b["f1_b_weighted"], (2 / 3 + 4 / 5 + 2 / 3) / 3)
    # Macro averages every class in the truth or the predictions: the absent SD 3 counts, with F1 0.
    assert np.isclose(b["f1_b_macro"], (2 / 3 + 4 / 5 + 2 / 3 + 0) / 4)
    a = task_a_metrics((y_b != 0).astype(int), (p_b != 0).astype(int))  # TP 4, FP 1, FN 0, TN 1
    assert np.isclose(a["acc_a"], 5 / 6) and np.isclose(a["precision_a"], 4 / 5) and np.isclose(a["recall_a"], 1.0)
    assert np.isclose(a["f1_a"], 8 / 9) and np.isclose(a["f1_a_weighted"], (2 * 2 / 3 + 4 * 8 / 9) / 6)
    expected = np.zeros((6, 6), int)
    for t, p in zip(y_b, p_b):
        expected[t, p] += 1
    assert (confusion(y_b, p_b) == expected).all()


def test_class_never_predicted_counts_as_zero_precision():
    y, p = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1])
    # SDXL (2) is never predicted: precision 0, not undefined; real 1, SD 2.1 1/3; weights 1, 1, 2 of 4.
    assert np.isclose(task_b_metrics(y, p)["precision_b_weighted"], (1 * 1 + 1 * (1 / 3) + 2 * 0) / 4)


def test_competition_json(tmp_path):
    import json

    path = write_competition_json(tmp_path / "a.json", [1, 0], [3, 0], index=[7, 9])
    assert json.loads(path.read_text()) == [
        {"index": 7, "Label_A": 1, "Label_B": 3},
        {"index": 9, "Label_A": 0, "Label_B": 0},
    ]
    assert set(all_metrics([1], [2], [1], [2])) >= {"f1_a", "f1_b_weighted"}


def test_the_competition_file_has_every_input_even_when_images_cannot_be_read(tmp_path, smoke_cfg, smoke_model):
    import json

    import datasets

    from conftest import png_bytes
    from helpers.cache.store import build_cache
    from helpers.data.schema import FEATURES
    from helpers.inference.cached import predict
    from study import scorecard as evaluate
    from study.stages import with_zero_inputs

    model, tokenizer = smoke_model
    cells = [
        {"bytes": png_bytes(), "path": None},
        {"bytes": b"broken", "path": None},
        {"bytes": png_bytes(), "path": None},
    ]
    split = datasets.Dataset.from_dict(
        {"Caption": ["a", "b", "c"], "Image": cells, "Label_A": [-1] * 3, "Label_B": [-1] * 3}, features=FEATURES
    )
    cached = build_cache(split, "pool", tmp_path / "c", 32, tokenizer, 8)
    assert len(cached) == 2  # bad_images: skip leaves it out of training and metrics ...
    complete = with_zero_inputs(smoke_cfg, split, "unlabelled", cached, tokenizer, 32)
    assert sorted(complete.rows.tolist()) == [0, 1, 2] and complete.blank.tolist() == [False, False, True]
    preds = predict(model.eval(), complete, 8, desc=None)
    path = evaluate.write_submission(tmp_path / "answer.json", complete, preds, len(split))
    assert [entry["index"] for entry in json.loads(path.read_text())] == [0, 1, 2]  # ... but not out of the answer
    with pytest.raises(RuntimeError, match="cover 2 of 3 inputs"):
        evaluate.write_submission(tmp_path / "short.json", cached, predict(model, cached, 8, desc=None), len(split))


def test_per_generator_task_a_accuracy_reads_the_task_a_answer():
    """Six-class decoding can answer A = 1 (AI) with B = 0 (real): Task A is then right for an AI
    image and wrong for a real one, whatever B says."""
    from helpers.evaluation.metrics import per_generator_accuracy

    table = per_generator_accuracy(label_b=[0, 2, 2], pred_a=[1, 1, 1], pred_b=[0, 0, 2]).set_index("class")
    assert table["task_a_accuracy"].tolist() == [0.0, 1.0]
    assert table["task_b_accuracy"].tolist() == [1.0, 0.5]
