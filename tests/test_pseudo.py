import numpy as np

from helpers.cache.dataset import CachedSplit
from helpers.inference.cached import decode
from helpers.training.pseudo_labels import (
    augment,
    load_selection,
    save_selection,
    select,
    select_confident,
    selection_summary,
    split_selected,
)


def _cached(n, label=-1, offset=0):
    return CachedSplit(
        np.full((n, 3, 4, 4), offset, np.uint8),
        np.zeros((n, 5), np.int32),
        np.ones(n, np.int32),
        np.full(n, label, np.int64),
        np.full(n, label, np.int64),
        np.arange(n) + offset,
    )


def test_selection_at_the_threshold_edge():
    prob_ai = np.array([0.8, 0.7999, 0.2, 0.95, 0.95])
    probs_b = np.array(
        [
            [0, 0.8, 0.2, 0, 0, 0],  # A 0.8, B 0.8: kept (>=)
            [0, 1.0, 0, 0, 0, 0],  # A just under: dropped
            [1.0, 0, 0, 0, 0, 0],  # predicted real with A confidence 0.8: kept
            [0, 0.5, 0.5, 0, 0, 0],  # B unsure: dropped
            [0, 0, 0, 0, 0.9, 0.1],
        ],
        dtype=float,
    )
    preds = decode(prob_ai, probs_b)
    assert select_confident(preds, 0.8).tolist() == [0, 2, 4]
    summary = selection_summary(preds, select_confident(preds, 0.8)).set_index("class")
    assert (
        summary.loc["real", "kept"] == 1
        and summary.loc["SD 2.1", "predicted"] == 3
        and summary.loc["SD 2.1", "kept"] == 1
    )


def test_split_keeps_captions_whole_and_near_the_fraction():
    captions = np.repeat([f"c{i}" for i in range(50)], 6)
    selected = np.arange(len(captions))
    train, val = split_selected(selected, captions, 0.8, seed=0)
    assert not set(captions[train]) & set(captions[val])
    assert len(train) + len(val) == len(selected) and len(set(captions[train])) == 40


def test_augment_adds_pseudo_labelled_rows_to_both_sides():
    train, val, pool = _cached(10, 1), _cached(4, 0), _cached(12, offset=100)
    prob_ai = np.r_[np.full(6, 0.99), np.full(6, 0.5)]
    probs_b = np.tile([0, 0, 0, 1.0, 0, 0], (12, 1))
    captions = np.repeat(["a", "b", "c", "d", "e", "f"], 2)
    selection = select(decode(prob_ai, probs_b), captions, 0.8, 0.8, seed=0)
    new_train, new_val, stats = augment(train, val, pool, selection)
    assert stats["selected"] == 6 and stats["to_train"] + stats["to_validation"] == 6
    assert len(new_train) == 10 + stats["to_train"] and len(new_val) == 4 + stats["to_validation"]
    assert (new_train.label_b[10:] == 3).all() and (new_train.pixels[10:] == 100).all()


def test_a_saved_selection_is_applied_only_to_its_own_pool(tmp_path):
    pool, other = _cached(12, offset=100), _cached(12, offset=7)
    preds = decode(np.full(12, 0.99), np.tile([0, 0, 0, 1.0, 0, 0], (12, 1)))
    selection = select(preds, np.repeat(list("abcdef"), 2), 0.8, 0.8, seed=0)
    made_by = {"pool": pool.fingerprint(), "model": "m1", "settings": {"pseudo_threshold": 0.8}}
    path = save_selection(tmp_path / "pseudo.npz", selection, made_by)
    loaded, why = load_selection(path, made_by)
    assert loaded.to_train.tolist() == selection.to_train.tolist() and loaded.stats == selection.stats and why == ""
    assert load_selection(path, {**made_by, "pool": other.fingerprint()}) == (
        None,
        "pseudo.npz is stale: pool (other rows) changed",
    )


def _confident_rows(labels, sureness):
    """Predictions whose Task B label is `labels` with both confidences `sureness`."""
    from helpers.inference.cached import Predictions

    labels, sureness = np.asarray(labels), np.asarray(sureness, float)
    probs_b = np.full((len(labels), 6), 0.0)
    probs_b[np.arange(len(labels)), labels] = 1.0
    return Predictions((labels != 0).astype(float), probs_b, (labels != 0).astype(np.int64), labels, sureness, sureness)


def test_class_quota_keeps_at_most_the_rarest_class_count_the_surest_first():
    from helpers.training.pseudo_labels import class_quota

    labels = [2] * 5 + [4] * 2 + [5] * 3 + [1]
    sureness = [0.99, 0.81, 0.95, 0.90, 0.85, 0.9, 0.97, 0.9, 0.92, 0.8, 0.5]
    preds = _confident_rows(labels, sureness)
    passing = select_confident(preds, 0.8)  # the SD 2.1 row (0.5) does not pass, so it sets no quota
    kept = class_quota(preds, passing)
    counts = np.bincount(preds.label_b[kept], minlength=6)
    assert counts.tolist() == [0, 0, 2, 0, 2, 2]
    assert sorted(kept[preds.label_b[kept] == 2].tolist()) == [0, 2]  # 0.99 and 0.95
    assert sorted(kept[preds.label_b[kept] == 5].tolist()) == [7, 8]  # 0.90 and 0.92
    stats = select(
        preds, np.array([f"c{i}" for i in range(11)], dtype=object), 0.8, 0.8, 0, balance="class_quota"
    ).stats
    assert stats["selected"] == 6 and stats["confident"] == 10 and stats["balance"] == "class_quota"


def test_group_check_drops_rows_their_caption_group_reassigns():
    from helpers.inference.cached import Predictions

    # One complete group: rows 1 and 2 both predicted SDXL (2), row 1 less surely; the joint
    # assignment gives row 1 the free class SD 2.1 (1), so the group disagrees with row 1 only.
    probs_b = np.full((6, 6), 0.01)
    for row, cls in enumerate([0, 2, 2, 3, 4, 5]):
        probs_b[row, cls] = 0.9
    probs_b[1, 1] = 0.05
    probs_b /= probs_b.sum(1, keepdims=True)
    prob_ai = np.array([0.05, 0.99, 0.99, 0.99, 0.99, 0.99])
    preds = decode(prob_ai, probs_b)
    captions = np.array(["one caption"] * 6 + ["alone"], dtype=object)
    both = Predictions(
        *(
            np.concatenate([getattr(preds, f), getattr(preds, f)[:1]])
            for f in ("prob_ai", "probs_b", "label_a", "label_b", "confidence_a", "confidence_b")
        )
    )
    plain = select(both, captions, 0.8, 1.0, 0)
    checked = select(both, captions, 0.8, 1.0, 0, group_check=True)
    assert 1 in plain.to_train and 1 not in checked.to_train
    assert set(plain.to_train) - set(checked.to_train) == {1} and 6 in checked.to_train  # a singleton passes
    assert checked.stats["dropped_by_group_check"] == 1


def test_under_six_class_confidence_the_group_check_keeps_rows_with_no_group_to_disagree():
    from helpers.inference.cached import Predictions

    # A singleton row that head A calls real (P(AI) 0.05) while head B's six-way argmax is SD 3:
    # the authors' pseudo-label is (real, SD 3). There is no caption group, so nothing disagrees.
    probs_b = np.array([[0.01, 0.01, 0.01, 0.95, 0.01, 0.01]])
    prob_ai = np.array([0.05])
    preds = decode(prob_ai, probs_b)
    both = Predictions(
        preds.prob_ai, preds.probs_b, preds.label_a, preds.label_b, preds.confidence_a, preds.confidence_b
    )
    captions = np.array(["alone"], dtype=object)
    plain = select(both, captions, 0.8, 1.0, 0, confidence="six_class")
    checked = select(both, captions, 0.8, 1.0, 0, confidence="six_class", group_check=True)
    assert plain.to_train.tolist() == [0] and checked.to_train.tolist() == [0]
    assert checked.stats["dropped_by_group_check"] == 0


def _sure_and_right(groups: int):
    """Complete caption groups (one image per class) and a model right and sure on every image, its
    head B's 'real' column untrained as under the paper's loss (never the argmax)."""
    truth = np.tile(np.arange(6), groups)
    prob_ai = np.where(truth == 0, 0.02, 0.98)
    probs_b = np.full((len(truth), 6), 0.004)
    probs_b[np.arange(len(truth)), np.where(truth == 0, 3, truth)] = 0.98  # a real image: an untrained guess
    probs_b /= probs_b.sum(1, keepdims=True)
    captions = np.repeat([f"caption {g}" for g in range(groups)], 6).astype(object)
    return truth, prob_ai, probs_b, captions


def test_under_six_class_confidence_the_group_check_keeps_the_real_photos_it_agrees_with():
    """The review's probe: 20 caption groups, a model right and sure everywhere. The group's joint
    answer calls each real photo real (P(real) = 1 - P(AI)); so does head A. Every real row is kept
    with the check as without it, and the per-class table and the pseudo-labels' classes count them
    as real, not as head B's untrained guess."""
    truth, prob_ai, probs_b, captions = _sure_and_right(20)
    preds = decode(prob_ai, probs_b)
    plain = select(preds, captions, 0.8, 0.8, 0, confidence="six_class")
    checked = select(preds, captions, 0.8, 0.8, 0, confidence="six_class", group_check=True)
    kept = np.concatenate([checked.to_train, checked.to_validation])
    assert (truth[np.concatenate([plain.to_train, plain.to_validation])] == 0).sum() == 20
    assert (truth[kept] == 0).sum() == 20 and checked.stats["dropped_by_group_check"] == 0
    per_class = {row["class"]: row for row in checked.stats["per_class"]}
    assert per_class["real"]["predicted"] == per_class["real"]["kept"] == 20
    assert per_class["SD 3"]["predicted"] == 20  # not 40: the real photos are not counted as SD 3
    assert (checked.classes == truth).all()


def test_the_class_quota_ranks_real_rows_as_real_under_six_class_confidence():
    """A real photo whose untrained head-B argmax is SD 3 takes no place in SD 3's quota: with 20
    real, 20 SD 3 and 5 SD 2.1 rows confident, the quota is 5 and 5 of each class are kept."""
    truth, prob_ai, probs_b, captions = _sure_and_right(20)
    rows = np.flatnonzero(np.isin(truth, [0, 3]) | ((truth == 1) & (np.arange(len(truth)) < 30)))
    preds = decode(prob_ai[rows], probs_b[rows])
    chosen = select(preds, captions[rows], 0.8, 1.0, 0, confidence="six_class", balance="class_quota")
    counts = np.bincount(chosen.classes[chosen.to_train], minlength=6)
    assert (
        counts.tolist() == [5, 5, 0, 5, 0, 0]
        and (chosen.classes[chosen.to_train] == truth[rows][chosen.to_train]).all()
    )
