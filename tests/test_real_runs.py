"""The paths real users take beyond the CPU demo: several GPUs, several nodes, precision, reruns
that must not read stale results, seeds, data revisions and the
pseudo-label pool's overlap with scored splits. What only a GPU shows is reproduced by patching
the condition (the GPU count, TF32 support)."""

import json
import os
import re
import socket
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import torch

from conftest import ROOT, png_bytes

SMOKE = ROOT / "params" / "smoke.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _cfg(base, **changes):
    """base (a Config or its dict) with changes, validated."""
    from helpers.config import load_config

    return load_config({**(base if isinstance(base, dict) else base.to_dict()), **changes})


# Several GPUs, one process ---------------------------------------------------------------------


def test_one_process_on_a_machine_with_eight_gpus_trains_on_one_with_the_profile_batch(smoke_cfg, tmp_path, capsys):
    from accelerate.state import AcceleratorState

    from helpers.training.arguments import training_arguments

    cfg = _cfg(smoke_cfg, batch_size=256, bf16=False)
    try:
        with (
            mock.patch("torch.cuda.is_available", return_value=True),
            mock.patch("torch.cuda.device_count", return_value=8),
            mock.patch("torch.cuda.set_device"),
        ):
            args = training_arguments(cfg.training_spec, tmp_path)
            # Without the guard the Trainer wraps the model in DataParallel over 8 GPUs: 2,048 rows a step.
            assert args.n_gpu == 1 and args.train_batch_size == 256 and args.per_device_train_batch_size == 256
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert "8 GPUs are visible to one process" in capsys.readouterr().out


# Waiting for the main process: the profile's timeout, no spinning --------------------------------


def _wait_run(timeout: int, sleep: float):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "tests" / "wait_script.py"),
        str(timeout),
        str(sleep),
        str(SMOKE),
    ]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.slow
def test_a_process_waiting_past_ddp_timeout_stops_with_a_message_naming_the_key():
    result = _wait_run(timeout=2, sleep=8)
    assert result.returncode != 0
    assert (
        "[rank 1/2] error: WaitTimeout: waited more than ddp_timeout (2 s) for the main process's test work"
        in result.stderr
    )


@pytest.mark.slow
def test_a_long_ddp_timeout_lets_the_others_wait_asleep_until_the_main_process_is_done():
    result = _wait_run(timeout=60, sleep=4)
    assert result.returncode == 0, result.stderr[-2000:]
    cpu = {int(r): float(s) for r, s in re.findall(r"rank (\d) done, cpu ([\d.]+) s", result.stdout)}
    assert set(cpu) == {0, 1} and cpu[1] < 1.0  # four seconds of waiting, under a second of CPU


# Two nodes ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_both_stages_with_caches_built_once_on_a_shared_work_dir(tmp_path):
    port = _free_port()
    node = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{port}",
        "--rdzv_id=two-nodes",
        "-m",
        "study.train",
        str(SMOKE),
        "--pseudo",
        "--set",
        f"work_dir={tmp_path}",
    ]
    procs = [
        subprocess.Popen(node, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)
    combined = "".join(outputs)
    for split in ("train", "validation", "unlabelled"):
        assert len(re.findall(rf"cache {split}: built \d+ rows", combined)) == 1, split
    # One writer: one record file (beside it the lock its merges hold), none per process.
    assert sorted(p.name for p in (tmp_path / "smoke").glob("record*") if p.suffix != ".lock") == ["record.json"]
    for stage in ("before", "after"):
        assert json.loads((tmp_path / "smoke" / f"model_{stage}" / "training_meta.json").read_text())["processes"] == 2
    assert (tmp_path / "smoke" / "model_after" / "model.safetensors").is_file()


# Precision as written ------------------------------------------------------------------------------


def test_the_profiles_precision_wins_over_the_environment(smoke_cfg, tmp_path, monkeypatch, capsys):
    from helpers.training.arguments import training_arguments

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    args = training_arguments(_cfg(smoke_cfg, bf16=False).training_spec, tmp_path)
    assert args.mixed_precision == "no"
    assert "ACCELERATE_MIXED_PRECISION=bf16 in the environment is ignored" in capsys.readouterr().out


def test_torch_compile_does_not_switch_tf32_on_against_the_profile(smoke_cfg, tmp_path):
    from helpers.training import precision
    from helpers.training.arguments import training_arguments

    saved = precision.tf32_switches()
    try:
        # TrainingArguments switches TF32 on under torch_compile wherever TF32 exists (Ampere and newer).
        with mock.patch("transformers.training_args.is_torch_tf32_available", return_value=True):
            training_arguments(_cfg(smoke_cfg, torch_compile=True, tf32=False).training_spec, tmp_path)
            assert not precision.effective_tf32() and set(precision.tf32_switches().values()) == {"ieee"}
            training_arguments(_cfg(smoke_cfg, torch_compile=True, tf32=True).training_spec, tmp_path)
            assert precision.effective_tf32() and set(precision.tf32_switches().values()) == {"tf32"}
    finally:
        precision.set_tf32_switches(saved)


@pytest.mark.slow
def test_torch_compile_with_tf32_trains_a_step(smoke_cfg, smoke_splits, tmp_path):
    """One path sets precision: after the profile's TF32 settings, inductor compiles the towers'
    layers as the study does and trains the model (a leaf switch left behind reads as mixed legacy
    and new APIs, which it refuses)."""
    from helpers.cache.dataset import collate
    from helpers.modeling.building import build_model
    from helpers.modeling.compiled import compile_repeated_blocks
    from helpers.training import precision
    from helpers.training.arguments import training_arguments
    from study import stages

    saved = precision.tf32_switches()
    try:
        cfg = _cfg(smoke_cfg, torch_compile=True, tf32=True)
        with mock.patch("transformers.training_args.is_torch_tf32_available", return_value=True):
            training_arguments(cfg.training_spec, tmp_path)
        model, tokenizer = build_model(cfg.model_spec)
        train = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["train"])["train"]
        batch = collate([train[i] for i in range(8)])
        assert compile_repeated_blocks(model) > 0
        loss = model(**batch).loss
        loss.backward()
        assert torch.isfinite(loss) and model.head_a.weight.grad is not None
    finally:
        precision.set_tf32_switches(saved)


# Seeds decide the starting weights ---------------------------------------------------------------


def test_a_seed_gives_the_same_starting_weights_whatever_ran_before(smoke_cfg):
    from helpers.modeling.building import build_model

    alone, _ = build_model(_cfg(smoke_cfg, seed=1).model_spec)
    torch.rand(1000)
    build_model(_cfg(smoke_cfg, seed=0).model_spec)  # as notebook 10 builds seed 0 before seed 1
    after_others, _ = build_model(_cfg(smoke_cfg, seed=1).model_spec)
    a, b = alone.state_dict(), after_others.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# Nothing stale -----------------------------------------------------------------------------------


@pytest.fixture()
def pool_world(smoke_cfg, smoke_splits, tmp_path):
    """A 'before' model saved in a fresh work dir, and the caches a pseudo-label round needs."""
    from helpers.modeling.building import build_model
    from helpers.modeling.checkpoints import save_detector
    from study import pseudo_round, setup, stages

    cfg = _cfg(smoke_cfg, work_dir=str(tmp_path / "runs"))
    model, tokenizer = build_model(cfg.model_spec)
    save_detector(model, tokenizer, setup.model_dir(cfg, "before"))
    caches = stages.caches_for(
        cfg, smoke_splits, tokenizer, model.config.image_size, pseudo_round.pseudo_cache_names(smoke_splits)
    )
    return cfg, model, caches


def test_a_saved_pseudo_label_selection_is_made_again_when_its_settings_or_model_changed(
    pool_world, smoke_splits, capsys
):
    from helpers.inference import cached as inference
    from helpers.modeling.building import build_model
    from helpers.modeling.checkpoints import save_detector
    from study import pseudo_round, setup

    cfg, model, caches = pool_world
    pool, _ = pseudo_round.pseudo_pool(smoke_splits, caches, cfg.pool_overlap)
    preds = inference.predict(model, pool, 64, desc=None)
    sureness = np.minimum(preds.confidence_a, preds.confidence_b)
    everything, half = float(sureness.min()), float(np.median(sureness))
    assert (sureness >= half).sum() < len(pool)  # the two thresholds really select differently

    first, _ = pseudo_round.new_selection(
        _cfg(cfg.to_dict(), pseudo_threshold=everything), smoke_splits, pool, {}, model
    )
    assert first.stats["selected"] == len(pool)
    _, _, stats = pseudo_round.pseudo_data(_cfg(cfg.to_dict(), pseudo_threshold=half), smoke_splits, caches)
    assert stats["selected"] == int((sureness >= half).sum())
    assert f"pseudo_threshold: {everything!r} -> {half!r}" in capsys.readouterr().out

    _, _, same = pseudo_round.pseudo_data(_cfg(cfg.to_dict(), pseudo_threshold=half), smoke_splits, caches)
    assert same == stats and "predicting the pool again" not in capsys.readouterr().out
    other, tokenizer = build_model(_cfg(cfg.to_dict(), seed=7).model_spec)  # 'before' retrained: other weights
    save_detector(other, tokenizer, setup.model_dir(cfg, "before"))
    pseudo_round.pseudo_data(_cfg(cfg.to_dict(), pseudo_threshold=half), smoke_splits, caches)
    assert "pseudo_labels.npz is stale: model (other weights) changed" in capsys.readouterr().out


def test_a_saved_model_of_other_settings_is_refused_by_name(smoke_cfg, tmp_path, trained_dir):
    import shutil

    from study import saved, setup
    from study.identity import StaleModelError, training_identity

    cfg = _cfg(smoke_cfg, work_dir=str(tmp_path), unlabelled_split="")
    shutil.copytree(trained_dir, setup.model_dir(cfg, "before"))
    meta = setup.model_dir(cfg, "before") / "training_meta.json"
    meta.write_text(
        json.dumps({"run_identity": {"params": training_identity(_cfg(cfg.to_dict(), epochs=5), "before")}})
    )
    with pytest.raises(StaleModelError, match="epochs: 5 -> 2"):
        saved.final_model(cfg)
    meta.write_text(
        json.dumps({"run_identity": {"params": training_identity(_cfg(cfg.to_dict(), seeds=[4]), "before")}})
    )
    assert saved.final_model(cfg)[2] == "before"  # the seed study's keys do not make a model stale


def test_the_index_shows_this_runs_figures_only(tmp_path):
    from report import write_index

    (tmp_path / "figures").mkdir()
    for name in ("cm_validation_before", "cm_test_old_run"):
        (tmp_path / "figures" / f"{name}.png").write_bytes(png_bytes())
    metrics = {"figures": ["cm_validation_before", "per_generator"]}
    page = write_index(tmp_path, {"params": {"profile": "x"}, "stages": []}, metrics).read_text()
    assert "cm_validation_before.png" in page and "cm_test_old_run" not in page


def test_a_training_resume_is_allowed_after_changing_keys_no_training_reads(smoke_cfg, smoke_splits, smoke_model):
    from helpers.training.trainer import ResumeError, check_same_run, run_identity
    from study import stages
    from study.identity import training_identity

    _, tokenizer = smoke_model
    caches = stages.caches_for(smoke_cfg, smoke_splits, tokenizer, 32, ["train", "validation"])

    def identity(cfg, stage="before"):
        return run_identity(training_identity(cfg, stage), caches["train"], caches["validation"], 1)

    recorded = identity(smoke_cfg)
    check_same_run(recorded, identity(_cfg(smoke_cfg, seeds=[3], analyses=[], external=[])), "ck")
    check_same_run(recorded, identity(_cfg(smoke_cfg, pseudo_threshold=0.3)), "ck")  # 'before' ignores pseudo keys
    with pytest.raises(ResumeError, match="pseudo_threshold"):
        check_same_run(identity(smoke_cfg, "after"), identity(_cfg(smoke_cfg, pseudo_threshold=0.3), "after"), "ck")


# One decoding everywhere ---------------------------------------------------------------------------


def test_the_perturbation_analyses_decode_task_b_as_the_profile_says(smoke_cfg, smoke_splits):
    from helpers.analyses import common
    from helpers.inference.cached import decode
    from helpers.modeling.building import build_model
    from study import stages

    cfg = _cfg(smoke_cfg, task_b_decoding="six_class")
    model, tokenizer = build_model(cfg.model_spec)
    with torch.no_grad():  # head B's untrained 'real' column on top: six_class answers real where A says AI
        model.head_b.bias[0] += 5.0
    cached = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["test"])["test"]
    _, preds = common.evaluate_view(
        model,
        smoke_splits["test"],
        cached,
        lambda image: image,
        model.config.image_size,
        cfg.eval_batch_size,
        desc=None,
    )
    six = decode(preds.prob_ai, preds.probs_b, mode="six_class")
    hierarchical = decode(preds.prob_ai, preds.probs_b, mode="hierarchical")
    assert not np.array_equal(six.label_b, hierarchical.label_b)  # the two decodings differ on these rows
    assert np.array_equal(preds.label_b, six.label_b) and np.array_equal(preds.label_a, six.label_a)
    # The unchanged view is the cached pixels: robustness scores its unperturbed level from the cache.
    from helpers.inference.cached import predict

    assert np.allclose(predict(model, cached, 64, desc=None).prob_ai, preds.prob_ai, atol=1e-6)


# Data you can audit --------------------------------------------------------------------------------


def test_a_hub_revision_is_requested_and_the_commit_loaded_is_recorded(smoke_cfg, smoke_splits, tmp_path, monkeypatch):
    import datasets

    from study.records import recorded
    from study.setup import study_splits

    asked = []

    def load_dataset(name, revision=None):
        asked.append((name, revision))
        return datasets.DatasetDict({k: smoke_splits[k] for k in ("train", "validation", "test")})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(
        "huggingface_hub.HfApi.dataset_info", lambda self, name, revision=None: mock.Mock(sha=f"{'ab' * 20}")
    )
    cfg = _cfg(smoke_cfg, work_dir=str(tmp_path), dataset="owner/ct2", dataset_revision="v2", unlabelled_split="")
    study_splits(cfg)
    assert asked == [("owner/ct2", "v2")]
    assert recorded(cfg, "data")["dataset"] == {"source": "owner/ct2", "requested": "v2", "loaded": "ab" * 20}


def _labelled(captions, shade):
    import datasets

    from helpers.data.schema import FEATURES

    return datasets.Dataset.from_dict(
        {
            "Caption": captions,
            "Image": [{"bytes": png_bytes((20, 20), (shade + i, 9, 9)), "path": None} for i in range(len(captions))],
            "Label_A": [1] * len(captions),
            "Label_B": [2] * len(captions),
        },
        features=FEATURES,
    )


@pytest.mark.parametrize("policy,left_out", [("drop", 2), ("keep", 0)])
def test_pool_rows_sharing_a_scored_splits_captions_are_found_though_their_bytes_differ(
    smoke_cfg, smoke_model, tmp_path, policy, left_out
):
    from study import pseudo_round, stages

    _, tokenizer = smoke_model
    splits = {
        "train": _labelled(["a dog", "a cat"], 10),
        "validation": _labelled(["a bird"], 40),
        "test": _labelled(["A red  bus.", "a boat"], 70),
        # The same captions, other images (a re-released file has other bytes), and new ones.
        "unlabelled": _labelled(["a red bus", "A BOAT", "a tree", "a lake"], 120),
    }
    cfg = _cfg(smoke_cfg, work_dir=str(tmp_path), pool_overlap=policy)
    caches = stages.caches_for(cfg, splits, tokenizer, 8)
    pool, overlap = pseudo_round.pseudo_pool(splits, caches, cfg.pool_overlap)
    assert (
        overlap["shared"]["test"] == {"captions": 2, "images": 0} and overlap["shared"]["validation"]["captions"] == 0
    )
    assert overlap["left_out"] == left_out and len(pool) == 4 - left_out
