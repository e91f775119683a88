"""The CPU side of the fast path: the headless training entry point and the benchmark script run
end to end and report numbers (the speed targets themselves are for a GPU and the benchmark)."""
import json
import sys

import yaml

from conftest import ROOT


def test_headless_training_entry_point(tmp_path, smoke_cfg, capsys):
    from helpers import train

    profile = tmp_path / "smoke.yaml"
    profile.write_text(yaml.safe_dump({**smoke_cfg.to_dict(), "work_dir": str(tmp_path / "runs")}))
    assert train.main([str(profile), "--pseudo"]) == 0
    timings = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"train_before_s", "pseudo_and_train_after_s", "total_s"} <= set(timings)
    for stage in ("before", "after"):
        assert (tmp_path / "runs" / "smoke" / f"model_{stage}" / "model.safetensors").is_file()


def test_benchmark_script_reports_every_pipeline(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import throughput

    out = tmp_path / "bench.json"
    assert throughput.main(["--profile", str(ROOT / "params" / "smoke.yaml"), "--rows", "96", "--image-side", "32",
                            "--steps", "2", "--warmup", "1", "--workers", "0", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    for key in ("a_paper_style_workers0", "b_ours_from_cache", "c_model_alone", "cache_build_rows_per_s"):
        assert results[key] > 0, key
    assert results["model_gflop_per_sample"] > 0 and results["device"] == "cpu"
