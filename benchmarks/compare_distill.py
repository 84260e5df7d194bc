"""Distillation check: how close each student's output is to its teacher's, and each model's quality.

For every student (a shipped model name, a run directory's last.pt, or a checkpoint path): PSNR (Y, crop 4) of
S(x) against T(x) on the eval photos, plus PSNR/SSIM against ground truth and bicubic. Prints a table and
writes JSON.
Run: python benchmarks/compare_distill.py --teacher teacher --student distilled=student \\
         --student scratch=runs/student_scratch -o benchmarks/results/<date>_<machine>/distill_<date>_<machine>.json
"""
import argparse
import json
import sys
from pathlib import Path

import torch


def _load(spec: str):
    from sft_kernels.models import SFTNet
    from sft_kernels.train.export import resolve_model

    run = Path(spec) / "last.pt"
    if run.is_file():  # a training run directory
        ck = torch.load(str(run), map_location="cpu", weights_only=False)
        cfg = ck["config"]
        model = SFTNet(cfg["variant"], cfg["num_blocks"], cfg["channels"])
        model.load_state_dict(ck.get("ema") or ck["model"])  # the weights export would ship
        return model.eval()
    return resolve_model(spec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="teacher")
    p.add_argument("--student", action="append", required=True, help="label=model (shipped name, run dir or path)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from sft_kernels.train.distill import compare
    from sft_kernels.train import evaluate

    teacher = _load(args.teacher)
    out = {"teacher": {"model": args.teacher, "eval": evaluate(teacher)}}
    for spec in args.student:
        label, _, model = spec.partition("=")
        if not model:
            p.error(f"--student wants label=model, got {spec!r}")
        student = _load(model)
        out[label] = {"model": model, "psnr_vs_teacher": compare(student, teacher), "eval": evaluate(student)}
    names = list(out["teacher"]["eval"])
    print(f"{'model':12s} " + " ".join(f"{n + ' PSNR':>12s} {n + ' vs T':>10s}" for n in names))
    for label, r in out.items():
        cells = []
        for n in names:
            vs_t = r.get("psnr_vs_teacher", {}).get(n)
            cells.append(f"{r['eval'][n]['psnr']:12.2f} {('-' if vs_t is None else f'{vs_t:.2f}'):>10s}")
        print(f"{label:12s} " + " ".join(cells))
    print(f"{'bicubic':12s} " + " ".join(f"{out['teacher']['eval'][n]['bicubic_psnr']:12.2f} {'-':>10s}"
                                         for n in names))
    if args.output:
        Path(args.output).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
