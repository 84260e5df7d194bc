"""The thirty-fourth session's ResNet-50 bf16 script (`2026-12-07s34_zen4-2c/e2e_resnet50_bf16.py`: float32 and
fp32_precision="bf16" against eager, NCHW 224², no_grad, 1 and 2 threads), then what each measured 3×3 conv chose
(float32, bf16 or bf16 Winograd) per input shape and thread count (the script behind e2e_resnet50_bf16.txt)."""
import os
import runpy

from sft_kernels.runtime import autotune

HERE = os.path.dirname(os.path.abspath(__file__))
runpy.run_path(os.path.join(HERE, "..", "2026-12-07s34_zen4-2c", "e2e_resnet50_bf16.py"))
for k, v in autotune.choices().items():
    if k[0] == "bf16_or_fp32":
        print(f"{k[-1]} thread(s) {tuple(k[1])} {tuple(k[4])} {v}")
