"""The kit for the lent GPU machine, whose image (Python 3.12, its own packages, benchmarks/gpu_image.txt)
reaches no package registry: the project's dependencies it lacks, carried as wheels, and a CPU
rehearsal in a venv that holds only what the image holds, so that a missing wheel shows up here.

    python benchmarks/gpu_kit.py wheels            # resolve for the image: writes benchmarks/gpu_wheels.txt
                                                   # (to carry) and benchmarks/gpu_rehearsal.txt (the image's part)
    python benchmarks/gpu_kit.py download          # the wheels of gpu_wheels.txt into .whl/ (the run's carry)
    python benchmarks/gpu_kit.py rehearse OUTDIR   # a Python 3.12 venv of gpu_rehearsal.txt (built once, kept under
                                                   # ~/.cache/ct2-detector), then gpu_session.sh --smoke OUTDIR in it

Nobody edits gpu_wheels.txt or gpu_rehearsal.txt by hand: `wheels` resolves pyproject.toml's
dependencies and its `study` extra (the engine: Snakemake, papermill) with pip for cp312 manylinux
x86_64, the image's known versions as constraints, and splits the result into what the image holds
and what must be carried. A dependency published as source only is built into a wheel here first. The rehearsal needs PyPI
(torch 2.11.0 with its CUDA libraries: about 4 GB, once) and a python3.12 on PATH (or PYTHON312).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "benchmarks" / "gpu_image.txt"
WHEELS = ROOT / "benchmarks" / "gpu_wheels.txt"
REHEARSAL = ROOT / "benchmarks" / "gpu_rehearsal.txt"
CARRIED = ROOT / ".whl"
# pip matches platform tags exactly; the image's glibc is 2.39 (Ubuntu 24.04, its Python 3.12.3).
PLATFORMS = (
    *(f"manylinux_2_{n}_x86_64" for n in range(39, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "any",
)
TARGET = [
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    *[a for p in PLATFORMS for a in ("--platform", p)],
]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages() -> dict[str, str | None]:
    """{canonical name: pinned version or None} of the image (gpu_image.txt)."""
    found = {}
    for line in IMAGE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[canonical(name)] = version or None
    return found


# What runs on the lent machine: the library and the study's engine, not its SLURM executor.
NOT_CARRIED = ("snakemake-executor-plugin-slurm",)
# Needed, but published as source only (pure Python): built into a wheel here, found by pip there.
SOURCE_ONLY = ("connection_pool",)
BUILT = ROOT / ".whl-built"


def requirements() -> list[str]:
    """What the study needs to run: pyproject.toml's dependencies and its `study` extra (the engine)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    study = project["optional-dependencies"]["study"]
    return [*project["dependencies"], *(r for r in study if not r.startswith(NOT_CARRIED))]


def build_source_only() -> list[str]:
    """SOURCE_ONLY as wheels in BUILT (pip --only-binary, which the image's platform tags need,
    cannot take a source release); pip's --find-links arguments that offer them."""
    BUILT.mkdir(exist_ok=True)
    for name in SOURCE_ONLY:
        if not any(canonical(w.name.split("-")[0]) == canonical(name) for w in BUILT.glob("*.whl")):
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(BUILT), name], check=True
            )
    return ["--find-links", str(BUILT)]


def resolve() -> dict[str, str]:
    """{name: version} of every distribution the study needs on the image, the image's pinned
    versions imposed: pip's resolver, for the image's Python and platform, nothing installed."""
    pins = [f"{name}=={version}" for name, version in image_packages().items() if version]
    with tempfile.TemporaryDirectory() as work:
        constraints, report = Path(work) / "image.txt", Path(work) / "report.json"
        constraints.write_text("\n".join(pins) + "\n")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--quiet",
                "--ignore-installed",
                "--report",
                str(report),
                "--target",
                str(Path(work) / "target"),
                *TARGET,
                *build_source_only(),
                "-c",
                str(constraints),
                *requirements(),
            ],
            check=True,
        )
        installed = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in installed}


# The image holds these at a version nobody has read, and the study needs another: pydantic-core
# 2.50 imports typing_extensions.Sentinel (4.14 and later; 4.12.2 fails), and Snakemake 9 asks for
# packaging below 26, which a newer image may hold. Carried whatever the image holds (a --target
# install comes first on PYTHONPATH).
CARRIED_ANYWAY = ("typing-extensions", "packaging")


def write_lists(resolved: dict[str, str]) -> tuple[list[str], list[str]]:
    image = image_packages()
    carry = {n for n in resolved if canonical(n) not in image or canonical(n) in CARRIED_ANYWAY}
    carried = sorted(f"{n}=={v}" for n, v in resolved.items() if n in carry)
    held = sorted(f"{n}=={v}" for n, v in resolved.items() if n not in carry)
    stamp = f"# Written by `python benchmarks/gpu_kit.py wheels` on {time.strftime('%Y-%m-%d')}: do not edit by hand.\n"
    WHEELS.write_text(
        stamp + "# The study's dependencies (pyproject.toml) that the GPU image (gpu_image.txt) lacks, resolved for\n"
        "# cp312 manylinux x86_64: `gpu_kit.py download` puts them in .whl/, gpu_session.sh installs them.\n"
        + "\n".join(carried)
        + "\n"
    )
    REHEARSAL.write_text(
        stamp + "# The image's own packages that the study needs, at the image's versions where gpu_image.txt pins\n"
        "# them (else as resolved that day): the rehearsal venv holds these and nothing else.\n"
        + "\n".join(held)
        + "\n"
    )
    return carried, held


def listed(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def download(folder: Path = CARRIED) -> Path:
    """The wheels of gpu_wheels.txt, and no others, in folder (two versions of one package stop the
    image's install)."""
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
            *(*TARGET, *build_source_only(), "-d", str(folder), *listed(WHEELS)),
        ],
        check=True,
    )
    got = sorted(folder.glob("*.whl"))
    if len(got) != len(listed(WHEELS)):
        raise SystemExit(f"expected {len(listed(WHEELS))} wheels in {folder}, found {len(got)}")
    # The lent machine's copy of the tree has no .git: the commit travels with the wheels.
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    (folder / "COMMIT").write_text((sha or "unknown") + "\n")
    print(f"{len(got)} wheels, {sum(w.stat().st_size for w in got) / 2**20:.1f} MiB in {folder}")
    return folder


def carried_wheels(folder: Path = CARRIED) -> set[tuple[str, str]]:
    """(canonical name, version) of each wheel in folder (a wheel's file name starts name-version-)."""
    return {(canonical(wheel.name.split("-")[0]), wheel.name.split("-")[1]) for wheel in folder.glob("*.whl")}


def python312() -> str:
    """A Python 3.12 that runs: PYTHON312, python3.12 on PATH, or one pyenv installed (its shim
    answers only where that version is selected)."""
    candidates = [
        os.environ.get("PYTHON312"),
        shutil.which("python3.12"),
        *sorted(map(str, Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")), reverse=True),
    ]
    for candidate in filter(None, candidates):
        if (
            subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"], capture_output=True
            ).returncode
            == 0
        ):
            return candidate
    raise SystemExit("the rehearsal needs Python 3.12, the image's: put python3.12 on PATH or set PYTHON312")


def rehearsal_venv() -> Path:
    """A venv of gpu_rehearsal.txt, built once per content of that list (the list's digest names it;
    a marker written last says it is complete, so a killed build is redone)."""
    digest = hashlib.sha256(REHEARSAL.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ct2-detector"
    venv = cache / f"gpu-rehearsal-{digest}"
    if (venv / "complete").is_file():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    print(f"building the image-like venv in {venv} (torch with its CUDA libraries: about 4 GB, once)", flush=True)
    subprocess.run([python312(), "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", *listed(REHEARSAL)], check=True
    )
    (venv / "complete").write_text(REHEARSAL.read_text())
    return venv


def rehearse(out: Path) -> int:
    """gpu_session.sh --smoke in the image-like venv with the carried wheels installed as on the
    machine (pip --target); 0 when every row of the session is ok."""
    started = time.perf_counter()
    venv = rehearsal_venv()
    built = time.perf_counter() - started
    if carried_wheels() != {(canonical(n), v) for n, _, v in (line.partition("==") for line in listed(WHEELS))}:
        download()
    with tempfile.TemporaryDirectory(prefix="ct2-site-") as site:
        env = {
            key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "JUPYTER_PATH")
        }
        env.update(PYTHON=str(venv / "bin" / "python"), CT2_SITE=site, PATH=f"{venv / 'bin'}:{env['PATH']}")
        session = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "--smoke", str(out)], env=env)
    rows = json.loads((out / "gpu_session.json").read_text()) if (out / "gpu_session.json").is_file() else []
    failed = [row for row in rows if row["status"] != "ok"]
    print(
        f"rehearsal: venv {built:.0f} s, session and all {time.perf_counter() - started:.0f} s; "
        f"{len(rows) - len(failed)} of {len(rows)} rows ok"
    )
    for row in failed:
        print(f"  not ok: {row['part']}: {row['status']}\n    {row.get('output', '')[-600:]}")
    return 0 if session.returncode == 0 and rows and not failed else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("wheels", "download", "rehearse"))
    parser.add_argument("out", nargs="?", type=Path, help="rehearse: the session's output folder")
    args = parser.parse_args(argv)
    if args.step == "wheels":
        carried, held = write_lists(resolve())
        print(f"{len(carried)} wheels to carry ({WHEELS.name}), {len(held)} packages of the image ({REHEARSAL.name})")
        return 0
    if args.step == "download":
        download()
        return 0
    if args.out is None:
        parser.error("rehearse needs OUTDIR")
    return rehearse(args.out.resolve())


if __name__ == "__main__":
    sys.exit(main())
