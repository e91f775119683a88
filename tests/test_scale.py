"""The scale path on CPU: several processes (torchrun, gloo: the code path of several GPUs), a
killed training that resumes, and data that stays on disk."""

import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import ROOT, png_bytes
from helpers.cache.dataset import CachedSplit
from helpers.cache.pixels import PixelView
from helpers.cache.store import build_cache
from helpers.training.distributed import BatchPlanError, batch_plan

SMOKE = str(ROOT / "params" / "smoke.yaml")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _sets(work, **extra):
    values = {"work_dir": str(work), **extra}
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


def _train(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "study.train", SMOKE, *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "batch,processes,limit,plan",
    [
        (256, 1, 0, (256, 1)),
        (256, 2, 0, (128, 1)),
        (256, 8, 0, (32, 1)),
        (256, 1, 64, (64, 4)),
        (256, 2, 48, (32, 4)),
        (12, 2, 5, (3, 2)),
    ],
)
def test_the_global_batch_is_split_over_processes_and_micro_batches(batch, processes, limit, plan):
    per_device, steps = batch_plan(batch, processes, limit)
    assert (per_device, steps) == plan and per_device * steps * processes == batch


def test_a_batch_that_does_not_divide_is_refused_with_the_nearest_choices():
    with pytest.raises(BatchPlanError, match="batch_size 256 does not divide over 3 processes; use 255 or 258"):
        batch_plan(256, 3)


def _cache(tmp_path, name, n, tokenizer, shade):
    import datasets

    from helpers.data.schema import FEATURES

    split = datasets.Dataset.from_dict(
        {
            "Caption": [f"{name}{i}" for i in range(n)],
            "Image": [{"bytes": png_bytes((20, 20), (shade + i, 0, 0)), "path": None} for i in range(n)],
            "Label_A": [1] * n,
            "Label_B": [2] * n,
        },
        features=FEATURES,
    )
    return build_cache(split, name, tmp_path, 8, tokenizer, 8)


def test_subset_and_concat_index_the_memory_maps_instead_of_copying(tmp_path, smoke_model):
    _, tokenizer = smoke_model
    a, b = _cache(tmp_path, "a", 6, tokenizer, 10), _cache(tmp_path, "b", 4, tokenizer, 90)
    joined = CachedSplit.concat([a, b.subset([3, 0])]).subset([7, 0, 6, 2])
    assert isinstance(joined.pixels, PixelView) and all(not isinstance(s, np.ndarray) for s in joined.pixels.sources)
    expected = np.concatenate([np.asarray(a.pixels), np.asarray(b.pixels)[[3, 0]]])[[7, 0, 6, 2]]
    assert np.array_equal(joined.pixels[np.arange(4)], expected)
    assert np.array_equal(joined.__getitems__([1, 0])["pixel_values"], expected[[1, 0]])
    # A data-loader worker receives file names and row numbers, not pixels.
    assert len(pickle.dumps(joined.pixels)) < 2000 and np.array_equal(
        pickle.loads(pickle.dumps(joined.pixels))[[0]], expected[:1]
    )
    assert joined.fingerprint() != CachedSplit.concat([a, b.subset([0, 3])]).subset([7, 0, 6, 2]).fingerprint()


def test_a_half_written_cache_is_never_read_but_rebuilt(tmp_path, smoke_model):
    _, tokenizer = smoke_model
    good = _cache(tmp_path / "good", "s", 5, tokenizer, 40)
    key = next((tmp_path / "good").glob("s-*[!k]")).name
    broken = tmp_path / "broken"
    (broken / f"{key}.tmp").mkdir(parents=True)  # a build killed while writing
    (broken / f"{key}.tmp" / "pixels.npy").write_bytes(b"\0" * 100)
    (broken / key).mkdir()  # a folder without meta.json: never complete
    (broken / key / "pixels.npy").write_bytes(b"garbage")
    rebuilt = _cache(broken, "s", 5, tokenizer, 40)
    assert np.array_equal(np.asarray(rebuilt.pixels), np.asarray(good.pixels))
    assert not (broken / f"{key}.tmp").exists() and (broken / key / "meta.json").is_file()


@pytest.mark.slow
def test_two_processes_under_accelerate_train_both_stages_with_one_cache_and_one_writer(tmp_path):
    """accelerate's launcher (torchrun underneath; on CPUs the same gloo path). torchrun itself is the
    shared smoke study's (processes: 2) and the two-node test's."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2"]
    cmd = [*launcher, "-m", "study.train", SMOKE, "--pseudo", *_sets(tmp_path)]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=400, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for split in ("train", "validation", "unlabelled"):
        assert len(re.findall(rf"cache {split}: built \d+ rows", output)) == 1, split
        assert len([p for p in (tmp_path / "cache").glob(f"{split}-*") if p.is_dir()]) == 1
    run = tmp_path / "smoke"
    # One writer: one record file (beside it the lock its merges hold), none per process.
    assert sorted(p.name for p in run.glob("record*") if p.suffix != ".lock") == ["record.json"]
    for stage in ("before", "after"):
        meta = json.loads((run / f"model_{stage}" / "training_meta.json").read_text())
        assert meta["processes"] == 2 and meta["per_device_batch"] == 8
    assert meta["pseudo"]["pool"] > 0
    from helpers.config import load_config
    from helpers.inference.cached import predict
    from helpers.modeling.checkpoints import load_detector
    from study import stages
    from study.setup import study_splits

    cfg = load_config(SMOKE, {"work_dir": str(tmp_path)})
    model, tokenizer = load_detector(run / "model_after")
    test = stages.caches_for(cfg, study_splits(cfg), tokenizer, model.config.image_size, ["test"])["test"]
    preds = predict(model, test, 64, desc=None)
    assert len(preds.label_b) == len(test) and np.isfinite(preds.prob_ai).all()


@pytest.mark.slow
def test_a_failing_process_reports_its_error_first_and_the_others_one_line(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "study.train",
        SMOKE,
        *_sets(tmp_path, dataset="/nowhere/data"),
    ]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("[rank ")]
    assert "[rank 0/2] error: DataError: data source '/nowhere/data'" in "\n".join(ours)
    assert sum(line.startswith("[rank 0/2] traceback:") for line in ours) == 1
    # The other process prints one line at most (torchrun may stop it before it notices), never a traceback:
    # its own error (every process reads the data) or that another one failed.
    assert all(
        line.startswith(("[rank 1/2] stopped: another process failed", "[rank 1/2] error: DataError: data source"))
        for line in ours
        if "rank 1/2" in line
    )
    assert "[rank1]" not in result.stderr and "SignalException" not in result.stderr
    assert "Connection closed by peer" not in result.stderr


def _weights(run, stage):
    return load_file(str(run / f"model_{stage}" / "model.safetensors"))


@pytest.mark.slow
def test_a_killed_training_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path):
    """Also the guard that training is deterministic from one process to the next: the killed run's
    first epoch and the uninterrupted run's, each in a fresh process, must give the same curves, and
    the resumed run the same weights."""
    # Enough rows and epochs that the kill lands mid-run: 288 rows, 18 steps an epoch, 4 epochs.
    longer = {"epochs": 4, "synthetic_captions": "{train: 48, validation: 8, test: 4, unlabelled: 4}"}
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.train", SMOKE, *_sets(killed, **longer)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    checkpoints = killed / "smoke" / "model_before.checkpoints"
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        if any((c / "provenance.json").is_file() for c in checkpoints.glob("checkpoint-*")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the training ended before its first checkpoint could be seen"
    assert not (killed / "smoke" / "model_before").exists()

    refused = _train(*_sets(killed, **longer, learning_rate=0.002), "--resume")
    assert refused.returncode != 0 and "learning_rate: 0.001 -> 0.002" in refused.stderr

    resumed = _train(*_sets(killed, **longer), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    meta = json.loads((killed / "smoke" / "model_before" / "training_meta.json").read_text())
    assert meta["resumed_from"] == "checkpoint-18" and meta["epochs_run"] == 3  # epoch 1 was not trained again
    assert [c["epoch"] for c in meta["curves"]] == [1.0, 2.0, 3.0, 4.0]

    assert _train(*_sets(straight, **longer)).returncode == 0
    reference = json.loads((straight / "smoke" / "model_before" / "training_meta.json").read_text())
    assert meta["curves"] == reference["curves"] and meta["best_epoch"] == reference["best_epoch"]
    resumed_weights, reference_weights = _weights(killed / "smoke", "before"), _weights(straight / "smoke", "before")
    assert all(torch.equal(resumed_weights[k], reference_weights[k]) for k in reference_weights)

    again = _train(*_sets(killed, **longer), "--resume")  # a finished stage is loaded, not trained
    assert again.returncode == 0 and "already finished" in again.stdout
    assert json.loads((killed / "smoke" / "model_before" / "training_meta.json").read_text())["epochs_run"] == 3


def test_a_resume_names_changed_data_and_process_counts():
    from helpers.training.trainer import ResumeError, check_same_run

    recorded = {"params": {"epochs": 4}, "data": {"train": "aaa", "validation": "bbb"}, "processes": 2}
    check_same_run(recorded, dict(recorded), "ck")
    with pytest.raises(ResumeError, match=r"data 'train' \(rows, images or labels\); processes: 2 -> 1"):
        check_same_run(
            recorded, {"params": {"epochs": 4}, "data": {"train": "zzz", "validation": "bbb"}, "processes": 1}, "ck"
        )
    with pytest.raises(ResumeError, match="older version"):
        check_same_run(None, recorded, "ck")


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads Linux's per-mapping memory accounting")
def test_building_a_cache_leaves_no_pages_of_the_source_files_resident(tmp_path, smoke_model):
    """datasets memory-maps a saved split; the build reads each image once and must not keep
    those pages resident (the cache phase's memory would grow with the data)."""
    import datasets

    from helpers.data.schema import FEATURES

    _, tokenizer = smoke_model
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)) for _ in range(40)]
    cells = []
    for image in noise:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        cells.append({"bytes": buffer.getvalue(), "path": None})
    datasets.Dataset.from_dict(
        {"Caption": ["c"] * 40, "Image": cells, "Label_A": [1] * 40, "Label_B": [2] * 40}, features=FEATURES
    ).save_to_disk(str(tmp_path / "saved"))
    split = datasets.load_from_disk(str(tmp_path / "saved"))
    files = {f["filename"] for f in split.cache_files}
    build_cache(split, "mapped", tmp_path / "cache", 8, tokenizer, 8)

    def resident_kib() -> int:
        total, current = 0, None
        for line in open("/proc/self/smaps"):
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", head[0]):  # a mapping's first line; its path, if any, is 6th
                current = head[5] if len(head) >= 6 else None
            elif line.startswith("Rss:") and current in files:
                total += int(head[1])
        return total

    size_kib = sum(os.path.getsize(f) for f in files) // 1024
    assert size_kib > 2500 and resident_kib() < 0.1 * size_kib


@pytest.mark.slow
def test_several_processes_outside_a_launcher_are_refused_with_the_command_that_starts_them(tmp_path):
    """The library launches nothing: processes: 2 without torchrun names the torchrun command (the
    engine runs it so), before any data is read."""
    result = _train(*_sets(tmp_path, processes=2), "--stage", "before")
    assert result.returncode == 2
    assert "torchrun --nproc_per_node 2 -m study.train" in result.stderr and "--stage before" in result.stderr
    assert not (tmp_path / "smoke").exists()
