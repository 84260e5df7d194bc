"""SFTNet int8 end to end (1×3×lr×lr LR -> ×4), as users call it: an ordinary NCHW tensor (and channels_last) under
torch.no_grad(), in this fresh process. Candidates, interleaved: eager fp32 (channels_last), our fp32 converted
model, and the int8 model (convert_, then quantize_ calibrated on crops of training photos; its PSNR on china and
flower, never trained on, against the float model's). The trained teacher's weights (sft_kernels.models.pretrained).

Run: python benchmarks/models/bench_int8_sftnet.py [--threads 1 2] [--lr 128] [--budget 0.1] [--winograd] [-o out.json]
     --winograd: also the int8 model with Int8Config(winograd=True) (its 3×3 convs in the Winograd domain,
     sft.qconv2d_winograd; the budget returns the most sensitive to the direct conv), timed beside the others.
     --sft-layer-ab: instead, the int8 forward with each SFT layer as one op (ops.qsft_layer) against the same
     forward with its first convs as their own calls (then ops.qsft_modulation), and the fp32 model, interleaved.
"""
import argparse
import copy
import json
import sys

import torch

import sft_kernels
from sft_kernels.data.datasets import TRAIN_COLOUR, sr_pair
from sft_kernels.models import pretrained
from sft_kernels.tools.benchmark import time_interleaved
from sft_kernels.tools.quantize import eval_pairs


def calibration_set(n: int = 4, lr: int = 64) -> tuple:
    """LR crops of training photos and their HR crops (never china or flower)."""
    lrs, hrs = [], []
    for name in TRAIN_COLOUR[:n]:
        lo, hi = sr_pair(name)
        lo, hi = (t.unsqueeze(0) if t.dim() == 3 else t for t in (lo, hi))
        lrs.append(lo[..., 16:16 + lr, 16:16 + lr])
        hrs.append(hi[..., 64:64 + 4 * lr, 64:64 + 4 * lr])
    return lrs, hrs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lr", type=int, default=128)
    p.add_argument("--budget", type=float, default=0.1, help="PSNR budget (dB) for quantize_")
    p.add_argument("--observer", default="mse")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--sft-layer-ab", action="store_true")
    p.add_argument("--winograd", action="store_true", help="also the int8 model with Int8Config(winograd=True)")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)

    teacher = pretrained.pretrained("teacher").eval()
    fp32 = copy.deepcopy(teacher)
    sft_kernels.convert_(fp32)
    int8 = copy.deepcopy(fp32)
    lrs, hrs = calibration_set()
    report = sft_kernels.quantize_(int8, sft_kernels.Int8Config(psnr_budget_db=args.budget, observer=args.observer),
                                   calibration=lrs, targets=hrs)
    q_psnr, f_psnr = eval_pairs(int8), eval_pairs(teacher)
    kept = report.stats.get("kept", [])
    print(f"quantize_: {len(report.names('quantized'))} convs int8, kept float: {kept or 'none'}")
    for name in f_psnr:
        print(f"PSNR {name}: float {f_psnr[name]:.3f} dB, int8 {q_psnr[name]:.3f} dB "
              f"({q_psnr[name] - f_psnr[name]:+.3f})")
    wino = None
    if args.winograd:
        wino = copy.deepcopy(fp32)
        wrep = sft_kernels.quantize_(wino, sft_kernels.Int8Config(psnr_budget_db=args.budget, observer=args.observer,
                                                                  winograd=True), calibration=lrs, targets=hrs)
        w_psnr = eval_pairs(wino)
        n_w = sum(1 for r in wrep.rows if r.stats.get("winograd"))
        print(f"quantize_(winograd=True): {n_w} convs in the Winograd domain, back to direct: "
              f"{wrep.stats.get('winograd_direct', [])}, kept float: {wrep.stats.get('kept') or 'none'}")
        for name in f_psnr:
            print(f"PSNR {name}: float {f_psnr[name]:.3f} dB, int8 Winograd {w_psnr[name]:.3f} dB "
                  f"({w_psnr[name] - f_psnr[name]:+.3f})")
    x = torch.rand(1, 3, args.lr, args.lr)
    if args.sft_layer_ab:
        return sft_layer_ab(fp32, int8, x, args)
    xcl = x.contiguous(memory_format=torch.channels_last)
    eager = copy.deepcopy(teacher).to(memory_format=torch.channels_last)
    rows = []
    print(f"{'thr':>3s} {'eager cl ms':>11s} {'fp32 nchw ms':>12s} {'int8 nchw ms':>12s} {'int8 cl ms':>10s} "
          f"{'vs fp32':>7s} {'vs eager':>8s}" + (f" {'wino nchw ms':>12s} {'wino cl ms':>10s} {'vs fp32':>7s} "
                                                   f"{'vs eager':>8s}" if wino is not None else ""))
    for threads in args.threads:
        torch.set_num_threads(threads)
        fns = {"eager fp32 channels_last": lambda: eager(xcl), "sft fp32 nchw": lambda: fp32(x),
               "sft int8 nchw": lambda: int8(x), "sft int8 channels_last": lambda: int8(xcl)}
        if wino is not None:
            fns.update({"sft int8 winograd nchw": lambda: wino(x),
                        "sft int8 winograd channels_last": lambda: wino(xcl)})
        with torch.no_grad():
            t = time_interleaved(fns, repeat=args.repeat)
        ms = {k: v * 1e3 for k, v in t.items()}
        row = dict(threads=threads, ms=ms, vs_fp32=ms["sft fp32 nchw"] / ms["sft int8 nchw"],
                   vs_eager=ms["eager fp32 channels_last"] / ms["sft int8 nchw"])
        extra = ""
        if wino is not None:
            wn = ms["sft int8 winograd nchw"]
            row.update(winograd_vs_fp32=ms["sft fp32 nchw"] / wn, winograd_vs_eager=ms["eager fp32 channels_last"] / wn)
            extra = (f" {wn:12.1f} {ms['sft int8 winograd channels_last']:10.1f} {row['winograd_vs_fp32']:6.2f}x "
                     f"{row['winograd_vs_eager']:7.2f}x")
        rows.append(row)
        print(f"{threads:3d} {ms['eager fp32 channels_last']:11.1f} {ms['sft fp32 nchw']:12.1f} "
              f"{ms['sft int8 nchw']:12.1f} {ms['sft int8 channels_last']:10.1f} {row['vs_fp32']:6.2f}x "
              f"{row['vs_eager']:7.2f}x" + extra, flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(rows=rows, psnr_float=f_psnr, psnr_int8=q_psnr, kept=kept, budget=args.budget,
                           observer=args.observer, psnr_int8_winograd=w_psnr if wino is not None else None,
                           winograd_direct=wrep.stats.get("winograd_direct") if wino is not None else None,
                           winograd_kept=wrep.stats.get("kept") if wino is not None else None), f, indent=1)
    return 0


def sft_layer_ab(fp32, int8, x, args) -> int:
    from sft_kernels.models import fused

    same = fused._same_input

    def three_calls():
        fused._same_input = lambda a, b: False  # the one-op path's condition: off for this forward
        try:
            return int8(x)
        finally:
            fused._same_input = same

    with torch.no_grad():
        assert torch.equal(three_calls(), int8(x))
    for threads in args.threads:
        torch.set_num_threads(threads)
        with torch.no_grad():
            t = time_interleaved({"fp32": lambda: fp32(x), "int8, qsft_layer": lambda: int8(x),
                                  "int8, three calls per layer": three_calls}, repeat=args.repeat)
        print(f"{threads} threads: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
