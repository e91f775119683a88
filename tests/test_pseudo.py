import numpy as np

from helpers.cache.dataset import CachedSplit
from helpers.inference.cached import decode
from helpers.training.pseudo_labels import augment, load_selection, save_selection, select, select_confident, selection_summary, split_selected


def _cached(n, label=-1, offset=0):
    return CachedSplit(np.full((n, 3, 4, 4), offset, np.uint8), np.zeros((n, 5), np.int32), np.ones(n, np.int32),
                       np.full(n, label, np.int64), np.full(n, label, np.int64), np.arange(n) + offset)


def test_selection_at_the_threshold_edge():
    prob_ai = np.array([0.8, 0.7999, 0.2, 0.95, 0.95])
    probs_b = np.array([[0, 0.8, 0.2, 0, 0, 0],      # A 0.8, B 0.8: kept (>=)
                        [0, 1.0, 0, 0, 0, 0],        # A just under: dropped
                        [1.0, 0, 0, 0, 0, 0],        # predicted real with A confidence 0.8: kept
                        [0, 0.5, 0.5, 0, 0, 0],      # B unsure: dropped
                        [0, 0, 0, 0, 0.9, 0.1]], dtype=float)
    preds = decode(prob_ai, probs_b)
    assert select_confident(preds, 0.8).tolist() == [0, 2, 4]
    summary = selection_summary(preds, select_confident(preds, 0.8)).set_index("class")
    assert summary.loc["real", "kept"] == 1 and summary.loc["SD 2.1", "predicted"] == 3 and summary.loc["SD 2.1", "kept"] == 1


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
    assert load_selection(path, {**made_by, "pool": other.fingerprint()}) == (None, "pseudo.npz is stale: pool (other rows) changed")
