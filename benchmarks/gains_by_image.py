"""Where a model's gain over bicubic comes from: PSNR gain (Y, crop 4) on each training photo next to the eval photos.

A model that fits its training photos better and better while the eval photos stay put is limited by its data,
not by its training time. Each model is a shipped name, a run directory (its last.pt: the weight average when
there is one, as export would ship) or a checkpoint path.
Run: python benchmarks/gains_by_image.py --model shipped=teacher --model finetuned=runs/teacher_ft \\
         [--images astronaut rocket ...] -o benchmarks/results/<date>_<machine>/gains_by_image_<date>_<machine>.json
"""
import argparse
import json
import sys

import torch

from compare_distill import _load
from sft_kernels.data.datasets import EVAL_IMAGES, TRAIN_IMAGES
from sft_kernels.train import evaluate
from sft_kernels.tools.benchmark import format_table

# The training photos of moderate size (retina, hubble_deep_field and the motorcycle take most of the time).
DEFAULT_TRAIN = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "grass", "gravel", "brick")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="label=model (shipped name, run dir or path)")
    p.add_argument("--images", nargs="+", default=list(DEFAULT_TRAIN), choices=list(TRAIN_IMAGES),
                   help="training photos to score (the eval photos are always scored)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = list(args.images) + list(EVAL_IMAGES)
    out, body = {}, []
    for spec in args.model:
        label, _, model = spec.partition("=")
        if not model:
            p.error(f"--model wants label=model, got {spec!r}")
        scores = evaluate(_load(model), names=names)
        out[label] = {"model": model, "eval": scores}
        body.append([label] + [f"{scores[n]['psnr'] - scores[n]['bicubic_psnr']:+.2f}" for n in names])
    headers = ["model"] + [n if n not in EVAL_IMAGES else f"{n} (eval)" for n in names]
    table = format_table(body, headers)
    print("PSNR gain over bicubic, dB (Y, crop 4)\n" + table)
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"gains_table": table, "models": out}, f, indent=1)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
