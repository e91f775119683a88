import datasets
import numpy as np
import pytest

from conftest import png_bytes
from helpers.cache.dataset import collate
from helpers.cache.store import BadImagesError, build_cache
from helpers.data.schema import FEATURES


def _split(cells):
    n = len(cells)
    return datasets.Dataset.from_dict(
        {"Caption": [f"c{i}" for i in range(n)], "Image": cells, "Label_A": [1] * n, "Label_B": [2] * n},
        features=FEATURES,
    )


def _folders(root):
    return [p for p in root.iterdir() if p.is_dir()]


def test_cache_is_built_once_and_keyed_by_settings(tmp_path, smoke_model):
    _, tokenizer = smoke_model
    split = _split([{"bytes": png_bytes((40, 30), (i, 0, 0)), "path": None} for i in range(5)])
    first = build_cache(split, "s", tmp_path, 16, tokenizer, 8)
    assert first.pixels.shape == (5, 3, 16, 16) and first.pixels.dtype == np.uint8
    assert len(_folders(tmp_path)) == 1
    again = build_cache(split, "s", tmp_path, 16, tokenizer, 8)
    assert np.array_equal(np.asarray(first.pixels), np.asarray(again.pixels)) and len(_folders(tmp_path)) == 1
    build_cache(split, "s", tmp_path, 24, tokenizer, 8)  # another image size: another cache
    build_cache(split, "s", tmp_path, 16, tokenizer, 12)  # another caption length: another cache
    assert len(_folders(tmp_path)) == 3


def test_bad_images_are_listed_not_zero_filled(tmp_path, smoke_model):
    _, tokenizer = smoke_model
    cells = [
        {"bytes": png_bytes(), "path": None},
        {"bytes": b"not an image", "path": None},
        {"bytes": None, "path": str(tmp_path / "missing.png")},
        {"bytes": png_bytes(), "path": None},
    ]
    cached = build_cache(_split(cells), "bad", tmp_path / "c", 8, tokenizer, 8)
    assert len(cached) + cached.n_failed == 4
    assert cached.rows.tolist() == [0, 3]
    assert cached.failures["row"].tolist() == [1, 2]
    assert "not an image" in cached.failures["reason"][0] and "not found" in cached.failures["reason"][1]
    assert (np.asarray(cached.pixels).reshape(2, -1).std(1) > 0).all()
    with pytest.raises(BadImagesError, match="row 1"):
        build_cache(_split(cells), "bad", tmp_path / "d", 8, tokenizer, 8, bad_images="error")
    with pytest.raises(BadImagesError, match="2 image"):  # the cache built under skip, reopened under error
        build_cache(_split(cells), "bad", tmp_path / "c", 8, tokenizer, 8, bad_images="error")


def test_collate_trims_text_to_the_longest_caption(tmp_path, smoke_model):
    _, tokenizer = smoke_model
    cached = build_cache(_split([{"bytes": png_bytes(), "path": None}] * 3), "t", tmp_path, 8, tokenizer, 32)
    batch = collate(cached.__getitems__([0, 1, 2]))
    assert batch["input_ids"].shape[1] == int(cached.lengths.max()) < 32
    assert batch["attention_mask"].sum(1).tolist() == cached.lengths.tolist()


def test_a_cache_too_large_for_the_disk_stops_before_writing_and_says_how_much_where(tmp_path, smoke_model):
    import shutil
    from collections import namedtuple
    from unittest import mock

    from helpers.cache.store import DiskSpaceError, cache_bytes

    _, tokenizer = smoke_model
    split = _split([{"bytes": png_bytes((40, 30), (i, 0, 0)), "path": None} for i in range(5)])
    needed = cache_bytes(5, 16, 8)
    usage = namedtuple("usage", "total used free")
    with mock.patch.object(shutil, "disk_usage", return_value=usage(10 * needed, 9 * needed, needed // 2)):
        with pytest.raises(DiskSpaceError, match=rf"the decode cache of 's' needs .* GiB in {tmp_path}, which has"):
            build_cache(split, "s", tmp_path, 16, tokenizer, 8)
    assert not _folders(tmp_path)  # nothing half-written
    built = build_cache(split, "s", tmp_path, 16, tokenizer, 8)
    on_disk = sum(f.stat().st_size for f in next(iter(_folders(tmp_path))).iterdir() if f.suffix in (".u8", ".npy"))
    assert len(built) == 5 and on_disk <= needed + 5 * 128 * 7  # the estimate covers the arrays (npy headers aside)


def test_collate_pads_to_the_smallest_fixed_width_that_holds_the_batch(tmp_path, smoke_model):
    from helpers.cache.dataset import length_buckets

    _, tokenizer = smoke_model
    cached = build_cache(_split([{"bytes": png_bytes(), "path": None}] * 3), "w", tmp_path, 8, tokenizer, 32)
    widths = length_buckets(64)
    batch = collate(cached.__getitems__([0, 1, 2]), widths=widths)
    assert widths == (16, 32, 64) and batch["input_ids"].shape[1] == 16 > int(cached.lengths.max())
    assert batch["attention_mask"].sum(1).tolist() == cached.lengths.tolist()
    assert collate(cached.__getitems__([0, 1, 2]), widths=(2,))["input_ids"].shape[1] == int(cached.lengths.max())


def test_prediction_reads_the_next_batch_while_the_model_runs(tmp_path, smoke_model, monkeypatch):
    """inference.cached.predict reads batch k+1 from the cache in a thread while the model scores
    batch k, and its answers are those of scoring the whole split in one batch."""
    import threading
    import time

    from helpers.cache.dataset import CachedSplit
    from helpers.inference.cached import predict

    model, tokenizer = smoke_model
    cells = [{"bytes": png_bytes((20, 20), (i * 9, 0, 0)), "path": None} for i in range(10)]
    cached = build_cache(_split(cells), "p", tmp_path, model.config.image_size, tokenizer, 16)
    events, read, forward = [], CachedSplit.__getitems__, model.forward

    def reading(split, indices):
        events.append(("read", int(indices[0]), threading.get_ident()))
        return read(split, indices)

    def scoring(*args, **kwargs):
        events.append(("model start", None, threading.get_ident()))
        time.sleep(0.2)
        out = forward(*args, **kwargs)
        events.append(("model end", None, threading.get_ident()))
        return out

    whole = predict(model, cached, batch_size=10, desc=None)
    monkeypatch.setattr(CachedSplit, "__getitems__", reading)
    monkeypatch.setattr(model, "forward", scoring)
    parts = predict(model, cached, batch_size=4, desc=None)
    np.testing.assert_allclose(parts.prob_ai, whole.prob_ai, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts.probs_b, whole.probs_b, rtol=1e-5, atol=1e-6)
    order = [(what, start) for what, start, _ in events]
    assert order.index(("read", 4)) < order.index(("model end", None))  # read during the first batch's scoring
    assert {thread for what, _, thread in events if what == "read"} != {threading.get_ident()}
