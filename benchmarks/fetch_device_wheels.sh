#!/usr/bin/env bash
# Download the wheels the workplace's H200 image lacks, for its Python 3.12, into .whl/ (git-ignored),
# so that one device call can carry them (see benchmarks/gpu_check.sh for the call).
#
#   bash benchmarks/fetch_device_wheels.sh            # datasets, dill, multiprocess, pyarrow (~56 MB)
#   NO_PYARROW=1 bash benchmarks/fetch_device_wheels.sh   # without pyarrow (~0.9 MB)
#
# Versions are the ones this checkout is tested with (read from the local environment when it has them).
# pyarrow is included because datasets 5.x asks for pyarrow >= 24 and the image's own version is not on
# record; the working tree that travels is limited to 64 MiB, so check `du -sh .whl` (about 56 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
ver() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null || echo "$2"; }
pkgs=("datasets==$(ver datasets 5.2.0)" "dill==$(ver dill 0.4.1)" "multiprocess==$(ver multiprocess 0.70.19)")
[[ "${NO_PYARROW:-0}" == 1 ]] || pkgs+=("pyarrow==$(ver pyarrow 26.0.1)")
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pkgs[@]}"
ls -la .whl && du -sh .whl
