"""Correctness sweep over torchvision models (classification, segmentation with dict outputs, vision transformers):
for each, convert_ fed NCHW and channels_last, fuse_for_inference, quantize_ (2 random calibration inputs) and
export_onnx of the converted and the int8 model (both checked in onnxruntime). Prints one line per model with the
relative errors against eager, the int8 SQNR and what failed; no timing (survey.py times).

Usage: PYTHONPATH=<unpacked torchvision, see survey.py> python sweep_torchvision.py NAME [NAME ...]
  NAME: a torchvision.models name (resnet18, swin_t, ...) or seg:NAME (torchvision.models.segmentation, 5 classes).
Random weights as torchvision initializes them: some models then output ~0 (EfficientNet-B0: 1e-14, ViT: exactly 0),
where the relative errors and the SQNR say nothing.
"""
import copy
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import torch

import sft_kernels


def build(name):
    import torchvision

    if name.startswith("seg:"):
        m = getattr(torchvision.models.segmentation, name[4:])(weights=None, weights_backbone=None, num_classes=5)
        return m.eval(), torch.randn(1, 3, 160, 160)
    side = 299 if name == "inception_v3" else 224
    return getattr(torchvision.models, name)(weights=None).eval(), torch.randn(1, 3, side, side)


def first(out):
    return out["out"] if isinstance(out, dict) else out


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def sweep(name, tmp: Path) -> dict:
    torch.manual_seed(0)
    m, x = build(name)
    with torch.no_grad():
        ref = first(m(x))
    res = {}
    c = copy.deepcopy(m)
    res["converted"] = len(sft_kernels.convert_(c).converted)
    with torch.no_grad():
        y, y_cl = first(c(x)), first(c(x.contiguous(memory_format=torch.channels_last)))
    res["convert err"], res["convert CL err"] = rel(y, ref), rel(y_cl, ref)
    try:
        with torch.no_grad():
            res["fuse err"] = rel(first(sft_kernels.fuse_for_inference(m, x)(x)), ref)
    except Exception as e:  # noqa: BLE001 - the sweep reports every failure
        res["fuse"] = f"FAIL {type(e).__name__}: {str(e)[:150]}"
    q = copy.deepcopy(m)
    sft_kernels.quantize_(q, sft_kernels.Int8Config(), calibration=[torch.randn_like(x) for _ in range(2)],
                          progress=False)
    with torch.no_grad():
        yq = first(q(x))
    res["int8 SQNR dB"] = (10 * torch.log10(ref.pow(2).mean() / (yq - ref).pow(2).mean())).item()
    for tag, mod in (("onnx float", c), ("onnx int8", q)):
        try:
            sft_kernels.export_onnx(mod, x, tmp / "m.onnx")
            res[tag] = "ok"
        except Exception as e:  # noqa: BLE001
            res[tag] = f"FAIL {type(e).__name__}: {str(e)[:200]}"
    return res


def main(names):
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                res = sweep(name, Path(tmp))
                print(name, {k: f"{v:.2e}" if isinstance(v, float) else v for k, v in res.items()}, flush=True)
            except Exception as e:  # noqa: BLE001
                print(name, "FAIL", type(e).__name__, str(e)[:300], flush=True)
                traceback.print_exc(limit=3)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    main(sys.argv[1:])
