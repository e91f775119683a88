#!/usr/bin/env bash
# Download the wheels of benchmarks/gpu_wheels.txt (for the GPU machine's Python 3.12, manylinux x86_64)
# into .whl/ (or the folder given), for a machine that cannot reach a package registry:
#   bash benchmarks/gpu_wheels.sh [FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
folder=${1:-.whl}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux_2_5_x86_64 manylinux1_x86_64 any; do platforms+=(--platform "$p"); done
grep -v '^#' benchmarks/gpu_wheels.txt | grep . > /tmp/gpu_wheels.$$
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$folder" -r /tmp/gpu_wheels.$$
rm -f /tmp/gpu_wheels.$$
du -sh "$folder"
