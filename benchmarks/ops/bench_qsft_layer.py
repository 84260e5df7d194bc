"""sft.qsft_layer (a whole int8 SFT layer in one call: two first 1×1 convs of the uint8 condition map, two second
1×1 convs, x·(scale + 1) + shift requantized for the next int8 conv) against the same layer as our three calls (two
sft.qconv2d, then sft.qsft_modulation) and as PyTorch's quantized x86 engine runs it (torch.ao quantized convs and
LeakyReLU, the second convs' outputs dequantized, the modulation in float, quantize_per_tensor), with the same
weights and quantization parameters. SFTNet's layer (cond 32, mid 32, x 64 channels) at LR sizes; interleaved
medians in this process, GOP/s of the four convs.

Usage: python benchmarks/ops/bench_qsft_layer.py [--threads 1 2] [--sizes 64 128 256] [-o out.json]
"""
import argparse
import json
import sys
import warnings

import torch

from sft_kernels import ops
from sft_kernels.ops.qconv2d import cpu as qcpu
from sft_kernels.tools.benchmark import time_interleaved

CS, T, OUT = (0.02, 3), ((0.05, 7), (0.04, 12)), (0.03, 100)


def layer(h, w, k=64, c=32, mid=32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def conv(ko, ci, sc):
        return (torch.randint(-127, 128, (ko, ci, 1, 1), dtype=torch.int8, generator=g),
                torch.rand(ko, generator=g) * sc + sc / 4, torch.randn(ko, generator=g) * 0.1)

    x = torch.randn(1, k, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    cond = torch.randint(0, 256, (1, c, h, w), dtype=torch.uint8, generator=g).contiguous(
        memory_format=torch.channels_last)
    return x, cond, [conv(mid, c, 0.0005), conv(k, mid, 0.002), conv(mid, c, 0.0005), conv(k, mid, 0.002)]


def candidates(x, cond, convs) -> dict:
    f_s, s_s, f_t, s_t = convs
    kw = dict(cond_input=CS, s_input=T[0], t_input=T[1], activation="leaky_relu", negative_slope=0.1,
              out_scale=OUT[0], out_zero_point=OUT[1])

    def three():
        mids = [ops.qconv2d(cond, *f, input_scale=CS[0], input_zero_point=CS[1], activation="leaky_relu",
                            negative_slope=0.1, out_scale=q[0], out_zero_point=q[1]) for f, q in zip((f_s, f_t), T)]
        return ops.qsft_modulation(x, mids[0], *s_s, mids[1], *s_t, s_input=T[0], t_input=T[1], out_scale=OUT[0],
                                   out_zero_point=OUT[1])

    fns = {"sft int8 layer": lambda: ops.qsft_layer(x, cond, *convs, **kw), "sft int8 3 calls": three}
    assert torch.equal(fns["sft int8 layer"](), three())
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
        with warnings.catch_warnings():  # quantized tensors are deprecated in recent torch; still the engine
            warnings.simplefilter("ignore")
            cq = torch.quantize_per_tensor((cond.float() - CS[1]) * CS[0], *CS, torch.quint8)  # the same bytes

            def ao(conv, out):
                w, ws, b = conv
                m = torch.ao.nn.quantized.Conv2d(w.shape[1], w.shape[0], 1)
                m.set_weight_bias(torch._make_per_channel_quantized_tensor(
                    w, ws.double(), torch.zeros(w.shape[0], dtype=torch.long), 0), b)
                m.scale, m.zero_point = out
                return m

            # the second convs' outputs need a uint8 range: their float outputs' on these inputs
            firsts = [ao(f, q) for f, q in zip((f_s, f_t), T)]
            leaky = [torch.ao.nn.quantized.LeakyReLU(q[0], q[1], 0.1) for q in T]
            mids = [lk(f(cq)) for f, lk in zip(firsts, leaky)]
            spans = [float(f(m).dequantize().abs().max()) for f, m in zip(
                (ao(s_s, (1.0, 128)), ao(s_t, (1.0, 128))), mids)]
            seconds = [ao(s, (max(span, 1e-3) / 127, 128)) for s, span in zip((s_s, s_t), spans)]

        def torch_ao():
            ms, mt = (lk(f(cq)) for f, lk in zip(firsts, leaky))
            s, t = seconds[0](ms).dequantize(), seconds[1](mt).dequantize()
            return torch.quantize_per_tensor(x * (s + 1) + t, OUT[0], OUT[1], torch.quint8)

        fns = {"torch.ao int8": torch_ao, **fns}
    return fns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="LR sizes (square)")
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    rows = []
    print(f"int8 kernel: {qcpu.kernel()}")
    print(f"{'thr':>3s} {'size':>5s} {'torch.ao ms':>11s} {'3 calls ms':>10s} {'layer ms':>8s} {'GOP/s':>6s} "
          f"{'vs 3 calls':>10s} {'vs torch.ao':>11s}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.sizes:
            x, cond, convs = layer(size, size)
            ops_ = 2 * sum(w.shape[0] * w.shape[1] for w, _, _ in convs) * size * size
            with torch.no_grad():
                t = time_interleaved(candidates(x, cond, convs), repeat=args.repeat)
            ms = {k: v * 1e3 for k, v in t.items()}
            lay = ms["sft int8 layer"]
            row = dict(threads=threads, size=size, ms=ms, gops=ops_ / lay / 1e6,
                       vs_three=ms["sft int8 3 calls"] / lay, vs_torch=ms.get("torch.ao int8", float("nan")) / lay)
            rows.append(row)
            ao = ms.get("torch.ao int8", float("nan"))
            print(f"{threads:3d} {size:5d} {ao:11.3f} {ms['sft int8 3 calls']:10.3f} {lay:8.3f} {row['gops']:6.0f} {row['vs_three']:9.2f}x {row['vs_torch']:10.2f}x", flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(dict(kernel=qcpu.kernel(), rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
