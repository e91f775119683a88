#!/usr/bin/env bash
# Every GPU measurement of the project in one command, in a fixed order, each part under its own
# time limit, within a budget; OUTDIR/gpu_session.json, .md and .log grow a row at a time, so a
# session stopped at its limit keeps every finished row. OUTDIR gets those three files only: data,
# caches and models go to the work folder (--work, default /tmp/ct2-gpu-work).
#   bash benchmarks/gpu_session.sh OUTDIR [--budget S] [--work DIR]   # on a GPU (budget 450 s by default)
#   bash benchmarks/gpu_session.sh --smoke OUTDIR                    # the same code paths on a CPU, tiny shapes
# Packages the machine lacks: the wheels `python benchmarks/gpu_kit.py download` put in .whl/ are
# installed first with pip --target into $CT2_SITE (default /tmp/site), as on a machine that reaches
# no registry; `python benchmarks/gpu_kit.py rehearse OUTDIR` runs this in a venv of the image's packages.
set -uo pipefail
cd "$(dirname "$0")/.."
smoke=()
if [ "${1:-}" = "--smoke" ]; then smoke=(--smoke); shift; fi
out=${1:?usage: bash benchmarks/gpu_session.sh [--smoke] OUTDIR [--budget S] [--work DIR]}
shift
python=${PYTHON:-python3}
site=${CT2_SITE:-/tmp/site}
# The wheels are resolved for the image's Python 3.12 (gpu_kit.py); another Python keeps its own packages.
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 \
    && ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] == (3, 12))'; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "error: could not install the wheels in .whl/" >&2; exit 1; }
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
  # A --target install puts nbconvert's templates and kernel specs under $site/share/jupyter, where
  # Jupyter looks only when told; the study's kernel (this Python, its packages via PYTHONPATH) goes there too.
  export JUPYTER_PATH=$site/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}
  "$python" -m ipykernel install --prefix "$site" --name ct2-detector --display-name "CT2 detector" >/dev/null \
    || { echo "error: could not register the study's kernel in $site" >&2; exit 1; }
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$python" benchmarks/gpu_session.py "${smoke[@]}" --out "$out" "$@"
