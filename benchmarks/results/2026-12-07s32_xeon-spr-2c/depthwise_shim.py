"""The fp32 depthwise kernel's own time: sft::depthwise_rows of the built extension called from C++ (depthwise_shim.cpp)
300 times back to back on data in L2, so no Python runs between calls and evicts it. Build the shim first, from the
repository root:
  T=.venv/lib/python3.11/site-packages/torch; g++ -O2 -std=c++17 -fPIC -shared -Icsrc -I$T/include \
    -I$T/include/torch/csrc/api/include -o /tmp/dwb/libshim2.so benchmarks/results/2026-12-07s32_xeon-spr-2c/depthwise_shim.cpp \
    sft_kernels/_C.cpython-311-x86_64-linux-gnu.so -Wl,-rpath,$PWD/sft_kernels
then swap builds of sft_kernels/_C*.so between runs (depthwise_grouped_ab.txt)."""
import ctypes, torch
torch.set_num_threads(1)
import sft_kernels
from sft_kernels.runtime import registry
registry.cpu_ext()
shim = ctypes.CDLL("/tmp/dwb/libshim2.so"); shim.bench_ext.restype = ctypes.c_double
shim.bench_ext.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
out = []
for C, H, R, SW in ((64, 64, 3, 1), (32, 112, 3, 1), (96, 112, 3, 2), (144, 56, 3, 1), (384, 14, 3, 1), (960, 7, 3, 1), (96, 56, 7, 1), (384, 14, 7, 1), (96, 56, 5, 1), (240, 28, 5, 2), (16, 16, 3, 1)):
    x = torch.randn(1, C, H, H).contiguous(memory_format=torch.channels_last); y = torch.empty_like(x)
    reps = max(30, int(3e6 / (C * H * H * R * R)))
    t = min(shim.bench_ext(C, H, reps, x.data_ptr(), y.data_ptr(), R, SW) for _ in range(3))
    fl = 2 * R * R * C * ((H - 1) // SW + 1) ** 2
    out.append(f"{C}@{H}² {R}x{R} s{SW}: {t*1e6:.1f} us {fl/t/1e9:.0f} GF/s")
print(" | ".join(out))
