#!/usr/bin/env bash
# One-shot GPU check: build the CUDA extension for sm_90, run the GPU tests, benchmark against cuDNN, tune Triton
# tiles with the time left, print a summary table last. Needs a CUDA build of torch and a GPU; no network.
#
#   On a lent GPU machine (device tool; carry .gpu_vendor, made by `make gpu-vendor`, for pytest/ninja if absent):
#       RESULTS_DIR=$OUT bash benchmarks/gpu_check.sh
#   Rehearsal on a CPU (each guard runs and reports; the benchmark runs its paths on the CPU with tiny shapes):
#       GPU_CHECK_REHEARSE=1 PYTHON=/path/to/python RESULTS_DIR=/tmp/gpu_rehearsal bash benchmarks/gpu_check.sh
#
# Everything lands in $RESULTS_DIR (default benchmarks/results/<date>_gpu/), in at most 8 files (the device tool
# returns no more): gpu_check.log (this script's output), build.log, details.log (tests, benchmark and sweeps in
# full), tests.xml, gpu_bench.jsonl, gpu_tune.jsonl and gpu_tune_cuda.jsonl (rows appended as measured).
# The Triton tune cache goes to $SFT_KERNELS_CACHE_DIR (default: a temporary folder, not the results).
# Time limits (s): GPU_CHECK_BUDGET_S (whole run, default 420), T_BUILD (150), T_TEST (150), T_BENCH (170);
# tuning gets what is left. ARCH=sm_90 picks the CUDA architecture. GPU_CHECK_TESTS_ONLY=1 stops after the tests
# (a short re-check after code moved: ~3 minutes with the machine's start).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
BUDGET=${GPU_CHECK_BUDGET_S:-420}
T_BUILD=${T_BUILD:-150} T_TEST=${T_TEST:-150} T_BENCH=${T_BENCH:-170}
RES=${RESULTS_DIR:-$ROOT/benchmarks/results/$(date -u +%Y-%m-%d)_gpu}
mkdir -p "$RES"
RES=$(cd "$RES" && pwd)
exec > >(tee -a "$RES/gpu_check.log") 2>&1
banner() { printf '\n%s\n!! %s\n%s\n' "$(printf '!%.0s' {1..100})" "$*" "$(printf '!%.0s' {1..100})"; }

export PYTHONUNBUFFERED=1 PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the checkout imports even if the editable install fails
export SFT_KERNELS_CACHE_DIR=${SFT_KERNELS_CACHE_DIR:-$(mktemp -d)}
DETAILS="$RES/details.log"

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
      PY=$(command -v "$cand"); break
    fi
  done
fi
[ -n "$PY" ] || { banner "no python >= 3.9 found (tried python, python3; set PYTHON=)"; exit 1; }

echo "== $(date -u) on $(hostname) ($(uname -m)), results in $RES"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3 || true

echo "== pre-flight ($PY)"
"$PY" - <<'EOF'
import importlib, shutil, sys
print("python", sys.version.split()[0], sys.executable)
missing = []
for name in ("torch", "triton", "numpy", "pytest", "setuptools"):
    try:
        m = importlib.import_module(name)
        print(f"  {name:10s} {getattr(m, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        missing.append(name)
        print(f"  {name:10s} MISSING ({type(e).__name__}: {e})")
try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME
    print(f"  torch CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name()}, sm_{''.join(map(str, torch.cuda.get_device_capability()))})"
             if torch.cuda.is_available() else ""))
    print(f"  torch's CUDA_HOME {CUDA_HOME}; nvcc on PATH {shutil.which('nvcc')}")
except Exception as e:  # noqa: BLE001
    print("  torch's CUDA details unavailable:", e)
if missing:
    print("  what is missing:", ", ".join(missing), "(pytest: the script falls back to .gpu_vendor if carried)")
EOF

TEST_PYTHONPATH=$PYTHONPATH
if ! "$PY" -c "import pytest" 2>/dev/null; then
  if [ -d "$ROOT/.gpu_vendor/pytest" ]; then
    TEST_PYTHONPATH="$PYTHONPATH:$ROOT/.gpu_vendor"; echo "pytest: using the carried copy in .gpu_vendor"
  else
    echo "pytest: absent and no .gpu_vendor carried: the test step will fail (make gpu-vendor, carry .gpu_vendor)"
  fi
fi
if ! command -v ninja >/dev/null && [ -x "$ROOT/.gpu_vendor/bin/ninja" ] && "$ROOT/.gpu_vendor/bin/ninja" --version >/dev/null 2>&1; then
  export PATH="$PATH:$ROOT/.gpu_vendor/bin"
fi
if command -v ninja >/dev/null; then echo "ninja $(ninja --version) at $(command -v ninja)"
else echo "ninja absent: extension units compile one after another (the CUDA extension alone is built, first)"; fi

echo "== build: the CUDA extension alone, for ${ARCH:-sm_90} (t=$(elapsed)s)"
B0=$(date +%s)
SFT_KERNELS_EXT=cuda SFT_KERNELS_CUDA_ARCH=${ARCH:-sm_90} timeout -k 5 "$T_BUILD" \
  "$PY" -m pip install -v --no-build-isolation --no-deps -e . > "$RES/build.log" 2>&1
rc=$?
echo "pip install exit $rc after $(( $(date +%s) - B0 ))s"
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && ! "$PY" -c "import sft_kernels._C_cuda" 2>/dev/null; then
  left=$(( T_BUILD - ($(date +%s) - B0) )); [ $left -lt 30 ] && left=30
  echo "retrying with setup.py build_ext --inplace (${left}s)"
  SFT_KERNELS_EXT=cuda SFT_KERNELS_CUDA_ARCH=${ARCH:-sm_90} timeout -k 5 "$left" \
    "$PY" setup.py build_ext --inplace >> "$RES/build.log" 2>&1
  echo "build_ext exit $?"
fi
grep -E "^ *sft_kernels: |!! " "$RES/build.log" | head -20
if "$PY" -c "import torch, sft_kernels._C_cuda; print('CUDA extension OK:', len(torch.ops.sft_cuda.tile_configs()), 'tile configs')"; then
  BUILD="CUDA extension built"
else
  BUILD="CUDA EXTENSION NOT BUILT"
  banner "$BUILD: the cuda backend is off for this run (Triton and cuDNN still run). Build log, errors and tail:"
  grep -n -i -E "error|fatal|No such file" "$RES/build.log" | head -30
  echo "--- tail of $RES/build.log"; tail -40 "$RES/build.log"
fi
timeout 60 "$PY" -m sft_kernels.tools.cli info 2>&1 | tail -15

echo "== GPU tests (t=$(elapsed)s)"
PYTHONPATH=$TEST_PYTHONPATH timeout -k 5 "$T_TEST" "$PY" -m pytest -q -p no:cacheprovider --tb=short -rfE \
  -m "not host_compile and not slow" --junitxml="$RES/tests.xml" \
  tests/gpu/test_gpu.py tests/runtime/test_gpu_readiness.py tests/ops/conv2d/test_cuda.py tests/ops/conv2d/test_triton.py \
  2>&1 | tee "$RES/tests.tmp" | grep -v -E "^\s*$"
TESTS=$(grep -E "passed|failed|error" "$RES/tests.tmp" | tail -1)
[ -n "$TESTS" ] || TESTS="no pytest summary (timed out after ${T_TEST}s or did not start: see details.log)"
{ echo "===== tests"; cat "$RES/tests.tmp"; } >> "$DETAILS"; rm -f "$RES/tests.tmp"

if [ "${GPU_CHECK_TESTS_ONLY:-0}" = 1 ]; then
  echo "build: $BUILD"; echo "tests: $TESTS"; echo "== done in $(elapsed)s (tests only)"; exit 0
fi

echo "== GPU benchmarks vs cuDNN (t=$(elapsed)s)"
rm -f "$RES/gpu_bench.jsonl"
REHEARSE=""
[ "${GPU_CHECK_REHEARSE:-0}" = 1 ] && ! "$PY" -c "import torch; raise SystemExit(not torch.cuda.is_available())" 2>/dev/null \
  && REHEARSE="--rehearse" && echo "(rehearsal: no GPU, so gpu_bench runs its paths on the CPU with tiny shapes)"
echo "===== gpu_bench" >> "$DETAILS"
timeout -k 5 "$T_BENCH" "$PY" benchmarks/gpu_bench.py $REHEARSE --out "$RES/gpu_bench.jsonl" > "$RES/bench.tmp" 2>&1
echo "gpu_bench exit $? ($(cat "$RES/gpu_bench.jsonl" 2>/dev/null | wc -l) rows; output in details.log)"
tail -3 "$RES/bench.tmp"
grep -E "Error|Traceback|FAILED" "$RES/bench.tmp" | head -10
cat "$RES/bench.tmp" >> "$DETAILS"; rm -f "$RES/bench.tmp"

left=$(( BUDGET - $(elapsed) ))
if [ $left -gt 45 ] && "$PY" -c "import torch; raise SystemExit(not torch.cuda.is_available())" 2>/dev/null; then
  echo "== tile sweeps, SFTNet shapes at batch 16: CUDA kernel, then Triton; ${left}s left (t=$(elapsed)s)"
  timeout -k 5 $(( left / 3 )) "$PY" benchmarks/gpu_tune.py --cuda --budget-s $(( left / 3 - 10 )) \
    --out "$RES/gpu_tune_cuda.jsonl" >> "$DETAILS" 2>&1
  echo "CUDA sweep exit $? ($(cat "$RES/gpu_tune_cuda.jsonl" 2>/dev/null | wc -l) shapes)"
  left=$(( BUDGET - $(elapsed) ))
  if [ $left -gt 45 ]; then
    timeout -k 5 "$left" "$PY" benchmarks/gpu_tune.py --budget-s $(( left - 30 )) --out "$RES/gpu_tune.jsonl" \
      >> "$DETAILS" 2>&1
    echo "Triton sweep exit $? ($(cat "$RES/gpu_tune.jsonl" 2>/dev/null | wc -l) shapes tuned)"
  fi
fi

echo "== summary (t=$(elapsed)s)"
"$PY" benchmarks/gpu_table.py "$RES/gpu_bench.jsonl"
echo
echo "build: $BUILD"
echo "tests: $TESTS"
echo "results: $RES ($(ls "$RES" | tr '\n' ' '))"
echo "== done in $(elapsed)s"
