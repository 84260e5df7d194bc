#!/usr/bin/env bash
# One-shot GPU check (on a machine with a CUDA GPU and a CUDA build of torch; no network needed):
# build the extension(s) for sm_90, run the GPU tests, run the GPU benchmarks vs cuDNN, print a table last.
# Raw output goes to benchmarks/results/gpu_check_<date>_<gpu>.log (+ .json). Sized for ~6 minutes on an H200;
# every step has its own timeout (180 + 170 + 200 s worst case), so run it with a 560 s limit.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
RES=${RESULTS_DIR:-benchmarks/results}
mkdir -p "$RES"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '_' || echo unknown)
STEM="$RES/gpu_check_$(date -u +%Y-%m-%d)_${GPU}"
exec > >(tee "$STEM.log") 2>&1
echo "== $(date -u) on $(hostname): $GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
$PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"

echo "== build (sm_90)"
# Full build output to its own log; compiler errors (and the extension's "building ... failed" warning) here.
SFT_KERNELS_CUDA_ARCH=sm_90 timeout 180 $PY -m pip install -v --no-build-isolation --no-deps -e . > "$STEM.build.log" 2>&1 \
  || echo "BUILD FAILED (continuing with the Python/Triton backends)"
grep -E -i "error|warning: building" "$STEM.build.log" | head -40
$PY -m sft_kernels.cli info

echo "== GPU tests"
timeout 170 $PY -m pytest -q tests/test_gpu.py tests/test_cuda_conv2d.py tests/test_triton_conv2d.py -p no:cacheprovider \
  || echo "GPU TESTS FAILED"

echo "== GPU benchmarks vs cuDNN"
timeout 200 $PY benchmarks/gpu_bench.py --batch 1 16 --lr 128 256 --out "$STEM.json" || echo "BENCHMARK FAILED"
echo "== raw log: $STEM.log"
