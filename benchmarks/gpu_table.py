"""Summary table of a gpu_bench.py run: per shape (ours / cuDNN time ratio per backend), then per catalog and
batch the geometric mean, the worst shape and how many shapes meet issue 22's bar (Triton >= 0.9x, CUDA >= 1.0x
cuDNN at batch 16), then SFTNet end to end, then the int8 rows (cuda and Triton qconv2d vs cuDNN fp16, bar 1.5×),
then the sparse rows (Triton and CUDA sparse_conv2d, 2:4 included, vs cuDNN fp16 dense and our dense CUDA conv),
the separable rows (Triton and CUDA fused separable conv vs cuDNN's depthwise + ReLU + 1×1).
Reads the JSON-lines file gpu_bench.py appends to.
Usage: python benchmarks/gpu_table.py RESULTS.jsonl
"""
import json
import math
import sys
from collections import defaultdict

BAR = {"triton": 0.9, "cuda": 1.0}


def _geomean(v):
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else float("nan")


def print_table(rows):
    meta = next((r for r in rows if r.get("kind") == "meta"), {})
    peak = meta.get("fp16_gemm_peak_tflops")
    if meta:
        print(f"\n{meta.get('gpu')}  torch {meta.get('torch')}  CUDA {meta.get('cuda')}  triton {meta.get('triton')}  "
              f"cuDNN {meta.get('cudnn')}  fp16 cuBLAS peak {peak:.0f} TFLOP/s  ({meta.get('when')})")
    conv = [r for r in rows if r.get("kind") == "conv"]
    backends = sorted({r["backend"] for r in conv})
    by_shape = defaultdict(dict)
    for r in conv:
        by_shape[(r["catalog"], r["batch"], r["shape"])][r["backend"]] = r
    if by_shape:
        print("\ncall: eager calls as users make them (Python + launch + kernel); kern: the same calls replayed "
              "from a CUDA graph (kernel time). x = cuDNN time / ours")
        print(f"{'catalog':8s} {'b':>3s} {'shape':26s} {'cuDNN ms':>9s} {'kern ms':>8s} "
              + " ".join(f"{b[:6] + ' call':>11s} {'kern':>6s} {'TF/s':>5s}" for b in backends))
    for (cat, n, shape), per in by_shape.items():
        any_r = next(iter(per.values()))
        cells = []
        for b in backends:
            r = per.get(b)
            if r is None or r.get("ms") is None:
                cells.append(f"{'FAIL':>11s} {'':>6s} {'':>5s}")
            else:
                kx = f"{r['kernel_vs_cudnn']:5.2f}x" if "kernel_ms" in r else f"{'-':>6s}"
                tf = r.get("kernel_tflops", r["tflops"])
                cells.append(f"{r['vs_cudnn']:10.2f}x {kx} {tf:5.0f}")
        kms = any_r.get("cudnn_kernel_ms")
        print(f"{cat:8s} {n:3d} {shape[:26]:26s} {any_r['cudnn_ms']:9.3f} "
              f"{kms if kms is not None else float('nan'):8.4f} " + " ".join(cells))
    groups = defaultdict(list)
    for r in conv:
        groups[(r["catalog"], r["batch"], r["backend"])].append(r)
    if groups:
        print(f"\n{'catalog':8s} {'batch':>5s} {'backend':8s} {'timing':6s} {'geomean':>8s} {'worst':>7s}  "
              f"{'worst shape':26s} {'>= bar':>7s} {'failed':>6s}")
    for (cat, n, b), rs in sorted(groups.items()):
        for timing, field in (("call", "vs_cudnn"), ("kern", "kernel_vs_cudnn")):
            ok = [r for r in rs if r.get("ms") is not None and field in r]
            if not ok:
                continue
            worst = min(ok, key=lambda r: r[field])
            meets = sum(r[field] >= BAR.get(b, 1.0) for r in ok)
            print(f"{cat:8s} {n:5d} {b:8s} {timing:6s} {_geomean([r[field] for r in ok]):7.2f}x "
                  f"{worst[field]:6.2f}x  {worst['shape'][:26]:26s} {meets:3d}/{len(ok):<3d} {len(rs) - len(ok):6d}")
    e2e = [r for r in rows if r.get("kind") == "e2e"]
    if e2e:
        print(f"\n{'SFTNet end to end':26s} {'batch':>5s} {'backend':14s} {'ms':>8s} {'eager cuDNN':>11s} "
              f"{'vs eager cuDNN':>14s} {'% peak':>7s}")
    for r in e2e:
        if r.get("ms") is None:
            print(f"{r['shape'][:26]:26s} {r['batch']:5d} {r['backend']:14s} FAILED {r.get('error', '')[:80]}")
        else:
            pct = 100 * r["tflops"] / peak if peak else float("nan")
            print(f"{r['shape'][:26]:26s} {r['batch']:5d} {r['backend']:14s} {r['ms']:8.3f} {r['cudnn_ms']:11.3f} "
                  f"{r['vs_cudnn']:13.2f}x {pct:6.1f}%")
    int8 = [r for r in rows if r.get("kind") == "int8"]
    if int8:
        print(f"\n{'int8 vs cuDNN fp16':26s} {'batch':>5s} {'backend':>7s} {'ms':>8s} {'cuDNN ms':>9s} {'call':>7s} "
              f"{'kernel':>7s} {'TOP/s':>6s}   (bar: 1.5x)")
    for r in int8:
        kern = f"{r['kernel_vs_cudnn']:6.2f}x" if r.get("kernel_vs_cudnn") else f"{'':>7s}"
        print(f"{r['shape'][:26]:26s} {r['batch']:5d} {r.get('backend', 'triton'):>7s} {r['ms']:8.3f} "
              f"{r['cudnn_ms']:9.3f} {r['vs_cudnn']:6.2f}x {kern} {r['tops']:6.1f}")
    for key in sorted({(r["batch"], r.get("backend", "triton")) for r in int8}):
        rs = [r for r in int8 if (r["batch"], r.get("backend", "triton")) == key]
        ks = [r["kernel_vs_cudnn"] for r in rs if r.get("kernel_vs_cudnn")]
        print(f"{'geomean':26s} {key[0]:5d} {key[1]:>7s} {'':8s} {'':9s} {_geomean([r['vs_cudnn'] for r in rs]):6.2f}x "
              + (f"{_geomean(ks):6.2f}x" if ks else ""))
    sparse = [r for r in rows if r.get("kind") == "sparse"]
    if sparse:
        print(f"\n{'sparse vs cuDNN fp16 dense':30s} {'batch':>5s} {'backend':>7s} {'pattern':>12s} {'sparsity':>8s} "
              f"{'ms':>8s} {'cuDNN ms':>9s} {'vs cuDNN':>8s} {'vs our dense':>12s}")
    for r in sparse:
        ours = f"{r['vs_cuda_dense']:11.2f}x" if r.get("vs_cuda_dense") else ""
        print(f"{r['shape'][:30]:30s} {r['batch']:5d} {r.get('backend', 'triton'):>7s} {r['pattern']:>12s} "
              f"{r['sparsity']:8.0%} {r['ms']:8.3f} {r['cudnn_ms']:9.3f} {r['vs_cudnn']:7.2f}x {ours}")
    sep = [r for r in rows if r.get("kind") == "separable"]
    if sep:
        print(f"\n{'separable vs cuDNN dw+relu+pw':30s} {'batch':>5s} {'backend':>7s} {'ms':>8s} {'cuDNN ms':>9s} "
              f"{'vs cuDNN':>8s} {'TFLOP/s':>7s}")
    for r in sep:
        print(f"{r['catalog'][:4] + ' ' + r['shape']:30.30s} {r['batch']:5d} {r.get('backend', 'triton'):>7s} "
              f"{r['ms']:8.3f} {r['cudnn_ms']:9.3f} {r['vs_cudnn']:7.2f}x {r['tflops']:7.2f}")
    for b in sorted({r["batch"] for r in sep}):
        for cat in sorted({r["catalog"] for r in sep}):
            for be in sorted({r.get("backend", "triton") for r in sep}):
                rs = [r["vs_cudnn"] for r in sep
                      if r["batch"] == b and r["catalog"] == cat and r.get("backend", "triton") == be]
                if rs:
                    print(f"{'geomean ' + cat:30s} {b:5d} {be:>7s} {'':8s} {'':9s} {_geomean(rs):7.2f}x")
    for r in rows:
        if r.get("kind") in ("error", "check"):
            print(" ", json.dumps(r)[:300])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        with open(argv[0]) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        print(f"gpu_table: {argv[0]} does not exist (the benchmark did not start, or wrote elsewhere)")
        return 1
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
