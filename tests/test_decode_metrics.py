import numpy as np
import pytest
from sklearn import metrics as sk

from helpers.inference.cached import decode
from helpers.evaluation.metrics import all_metrics, confusion, task_a_metrics, task_b_metrics, write_competition_json


def test_hierarchical_decoding():
    prob_ai = np.array([0.2, 0.9, 0.5, 0.49])
    probs_b = np.array([[0.0, 0.1, 0.6, 0.1, 0.1, 0.1],   # A says real: B must be real despite head B
                        [0.9, 0.02, 0.02, 0.02, 0.02, 0.02],  # A says AI: B is the best AI class, never 'real'
                        [0.1, 0.1, 0.1, 0.1, 0.1, 0.5],
                        [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    out = decode(prob_ai, probs_b)
    assert out.label_a.tolist() == [0, 1, 1, 0]
    assert out.label_b[[0, 3]].tolist() == [0, 0] and out.label_b[2] == 5 and out.label_b[1] in (1, 2, 3, 4, 5)
    assert np.allclose(out.confidence_a, [0.8, 0.9, 0.5, 0.51])
    assert np.allclose(out.confidence_b[[0, 3]], out.confidence_a[[0, 3]])  # real rows: decided by A
    assert np.isclose(out.confidence_b[2], 0.5 / 0.9)  # renormalised over the AI classes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y_b, p_b = rng.integers(0, 6, 300), rng.integers(0, 6, 300)
    p_b[:5] = 3  # some class may be never predicted in other seeds; zero_division must agree
    y_a, p_a = (y_b != 0).astype(int), (p_b != 0).astype(int)
    a, b = task_a_metrics(y_a, p_a), task_b_metrics(y_b, p_b)
    assert np.isclose(a["acc_a"], sk.accuracy_score(y_a, p_a))
    assert np.isclose(a["precision_a"], sk.precision_score(y_a, p_a))
    assert np.isclose(a["recall_a"], sk.recall_score(y_a, p_a))
    assert np.isclose(a["f1_a"], sk.f1_score(y_a, p_a))
    assert np.isclose(a["f1_a_weighted"], sk.f1_score(y_a, p_a, average="weighted"))
    assert np.isclose(b["acc_b"], sk.accuracy_score(y_b, p_b))
    for ours, avg in (("precision_b_weighted", "weighted"), ("recall_b_weighted", "weighted"), ("f1_b_weighted", "weighted"),
                      ("f1_b_macro", "macro")):
        fn = {"precision": sk.precision_score, "recall": sk.recall_score, "f1": sk.f1_score}[ours.split("_")[0]]
        assert np.isclose(b[ours], fn(y_b, p_b, average=avg, zero_division=0)), ours
    assert (confusion(y_b, p_b) == sk.confusion_matrix(y_b, p_b, labels=range(6))).all()


def test_class_never_predicted_counts_as_zero_precision():
    y, p = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1])
    assert np.isclose(task_b_metrics(y, p)["precision_b_weighted"], sk.precision_score(y, p, average="weighted", zero_division=0))


def test_competition_json(tmp_path):
    import json

    path = write_competition_json(tmp_path / "a.json", [1, 0], [3, 0], index=[7, 9])
    assert json.loads(path.read_text()) == [{"index": 7, "Label_A": 1, "Label_B": 3}, {"index": 9, "Label_A": 0, "Label_B": 0}]
    assert set(all_metrics([1], [2], [1], [2])) >= {"f1_a", "f1_b_weighted"}


def test_the_competition_file_has_every_input_even_when_images_cannot_be_read(tmp_path, smoke_cfg, smoke_model):
    import json

    import datasets

    from conftest import png_bytes
    from helpers.evaluation import scorecard as evaluate
    from helpers.cache.store import build_cache
    from helpers.data.schema import FEATURES
    from helpers.inference.cached import predict

    model, tokenizer = smoke_model
    cells = [{"bytes": png_bytes(), "path": None}, {"bytes": b"broken", "path": None}, {"bytes": png_bytes(), "path": None}]
    split = datasets.Dataset.from_dict({"Caption": ["a", "b", "c"], "Image": cells, "Label_A": [-1] * 3,
                                        "Label_B": [-1] * 3}, features=FEATURES)
    cached = build_cache(split, "pool", tmp_path / "c", 32, tokenizer, 8)
    assert len(cached) == 2  # bad_images: skip leaves it out of training and metrics ...
    complete = evaluate.every_row(smoke_cfg, split, "unlabelled", cached, tokenizer, 32)
    assert sorted(complete.rows.tolist()) == [0, 1, 2] and complete.blank.tolist() == [False, False, True]
    preds = predict(model.eval(), complete, 8, desc=None)
    path = evaluate.write_submission(tmp_path / "answer.json", complete, preds, len(split))
    assert [entry["index"] for entry in json.loads(path.read_text())] == [0, 1, 2]  # ... but not out of the answer
    with pytest.raises(RuntimeError, match="cover 2 of 3 inputs"):
        evaluate.write_submission(tmp_path / "short.json", cached, predict(model, cached, 8, desc=None), len(split))
