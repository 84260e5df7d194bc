"""convert_(model) against convert_(model, fp32_precision="bf16") on the unseen-model zoo and ResNet-50, as users
call them: an ordinary NCHW float32 input under torch.no_grad(), one fresh process per model, interleaved medians.
Prints the bf16 speed-up over our float32 model and over eager, and each output's error against eager's.
Usage: python sweep_bf16.py [--threads 1] [--rounds 9] [NAME ...]   (no NAME: every model, each in its own process)"""
import argparse, copy, json, subprocess, sys, time, warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
ZOO = HERE.parents[2] / "models" / "unseen_cnns"
NAMES = ["srcnn", "fsrcnn", "espcn", "unet", "vgg11bn", "effnet", "densenet", "rcan", "dilseg", "shufflenet",
         "rrdbnet", "resnet50"]


def build(name):
    if name == "resnet50":
        sys.path.insert(0, str(HERE.parents[2] / "models"))
        from bench_resnet50 import resnet50  # noqa: E402
        torch.manual_seed(0)
        return resnet50().eval(), (1, 3, 224, 224)
    sys.path.insert(0, str(ZOO))
    from models import build as zoo_build  # noqa: E402
    return zoo_build(name)


def one(name, threads, rounds):
    import sft_kernels
    torch.set_num_threads(threads)
    model, shape = build(name)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        ref = model(x)
    f32, b16 = copy.deepcopy(model), copy.deepcopy(model)
    sft_kernels.convert_(f32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = sft_kernels.convert_(b16, fp32_precision="bf16")
    actions = {}
    for r in rep.rows:
        actions[r.action] = actions.get(r.action, 0) + 1
    runs = {"eager": model, "fp32": f32, "bf16": b16}
    times = {k: [] for k in runs}
    with torch.no_grad():
        outs = {k: m(x) for k, m in runs.items()}
        for _ in range(12):  # past the autotuner's first look and its second (SecondLook)
            for k in ("fp32", "bf16"):
                runs[k](x)
        # eager timed apart: its freed multi-MB outputs made the model timed right after it page-fault (PReLU
        # outputs of FSRCNN 0.2 -> 1.0 ms), so the two converted models alternate among themselves
        for i in range(rounds):
            t0 = time.perf_counter()
            model(x)
            times["eager"].append(time.perf_counter() - t0)
        for i in range(rounds):
            for k in (("fp32", "bf16") if i % 2 else ("bf16", "fp32")):
                t0 = time.perf_counter()
                runs[k](x)
                times[k].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in times.items()}
    scale = ref.abs().max().item()
    err = {k: (outs[k] - ref).abs().max().item() / scale for k in ("fp32", "bf16")}
    return dict(name=name, threads=threads, ms=med, rel_err=err, bf16_vs_fp32=med["fp32"] / med["bf16"],
                bf16_vs_eager=med["eager"] / med["bf16"], fp32_vs_eager=med["eager"] / med["fp32"],
                actions=actions)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    if len(a.names) == 1:
        print("RESULT " + json.dumps(one(a.names[0], a.threads, a.rounds)), flush=True)
        return
    import sft_kernels.backends as b
    print(f"bf16 unit: {b.bf16_unit()}; threads {a.threads}; NCHW float32 input, no_grad, medians of {a.rounds}")
    print(f"{'model':11s} {'eager ms':>9s} {'fp32 ms':>9s} {'bf16 ms':>9s} {'bf16/fp32':>9s} {'bf16/eager':>10s} "
          f"{'fp32 err':>9s} {'bf16 err':>9s}  convs by precision")
    for n in a.names or NAMES:
        p = subprocess.run([sys.executable, str(HERE), n, "--threads", str(a.threads), "--rounds", str(a.rounds)],
                           capture_output=True, text=True)
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        if not line:
            print(f"{n:11s} FAILED: {p.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = json.loads(line[0][7:])
        print(f"{n:11s} {r['ms']['eager']:9.2f} {r['ms']['fp32']:9.2f} {r['ms']['bf16']:9.2f} "
              f"{r['bf16_vs_fp32']:8.2f}x {r['bf16_vs_eager']:9.2f}x {r['rel_err']['fp32']:9.1e} "
              f"{r['rel_err']['bf16']:9.1e}  {r['actions']}", flush=True)


if __name__ == "__main__":
    main()
