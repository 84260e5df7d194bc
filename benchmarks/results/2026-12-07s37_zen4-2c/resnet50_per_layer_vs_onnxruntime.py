# Per-layer times of ResNet-50 inside the fused model (forward hooks on leaf modules) beside onnxruntime's
# per-node profile, 1 thread.
# Output: resnet50_per_layer_vs_onnxruntime.txt. Run from the repository root: python <this file>
import sys, torch, io, warnings, time, collections, json
sys.path.insert(0, "benchmarks/models")
torch.set_num_threads(1)
import bench_resnet50 as B
import sft_kernels
import onnxruntime as ort
res = B.build(1, fold=False)
m, x = (res[0], res[1]) if isinstance(res, tuple) else (res, torch.randn(1, 3, 224, 224))
m = m.eval()
with torch.no_grad():
    f = sft_kernels.fuse_for_inference(m, x)
    for i in range(5): f(x)
    acc = collections.defaultdict(list); t0 = {}
    def pre(mod, a): t0[id(mod)] = time.perf_counter()
    def post(mod, a, o): acc[mod._n].append(time.perf_counter() - t0[id(mod)])
    for n, mod in f.named_modules():
        if len(list(mod.children())) == 0:
            mod._n = n; mod.register_forward_pre_hook(pre); mod.register_forward_hook(post)
    for i in range(15): f(x)
    ours = {n: sorted(v)[len(v)//2] * 1e3 for n, v in acc.items()}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore"); torch.onnx.export(m, (x,), buf, dynamo=False)
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1; so.enable_profiling = True
    so.profile_file_prefix = "/tmp/r50prof"
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    xn = x.numpy(); nm = sess.get_inputs()[0].name
    for i in range(20): sess.run(None, {nm: xn})
    ev = json.load(open(sess.end_profiling()))
    oacc = collections.defaultdict(list)
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            oacc[e["name"][:-12]].append(e["dur"] / 1e3)
    orts = {n: sorted(v[5:])[len(v[5:])//2] for n, v in oacc.items()}
print("ours total", round(sum(ours.values()), 2), "ort total", round(sum(orts.values()), 2))
for n, v in ours.items():
    mod = f.get_submodule(n)
    extra = f"{mod.in_channels}->{mod.out_channels} k{mod.kernel_size[0]} s{mod.stride[0]}" if hasattr(mod, "kernel_size") and hasattr(mod, "in_channels") else ""
    print(f"ours {n:22s} {type(mod).__name__:14s} {extra:22s} {v:.3f}")
for n, v in orts.items():
    print(f"ort  {n:50s} {v:.3f}")
