"""convert_ and quantize_ on ten CNNs the package's other benchmarks never saw (models.py: SRCNN, FSRCNN, ESPCN, a
UNet, VGG-11-BN, EfficientNet-B0 stages, DenseNet, RCAN, a dilated segmentation head, ShuffleNetV2), each in a fresh
process pinned to CPU 0 (run_one.py: 1 thread, interleaved medians, NCHW and channels_last input, outputs checked
against eager), then a Markdown table. python survey.py OUT_DIR [names...]

Names "tv:NAME" build torchvision.models.NAME (random weights, 1×3×224×224). PyPI's torchvision does not import
beside torch 2.13 ("operator torchvision::nms does not exist"); the models themselves use none of its C ops, so for
this survey its wheel was unpacked into a folder with torchvision/_meta_registrations.py and
_autograd_registrations.py emptied and _C.so removed, and that folder put on PYTHONPATH."""
import argparse, json, pathlib, subprocess, sys
HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
from models import MODELS
ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("out_dir", help="folder for each model's log and results.json (created)")
ap.add_argument("names", nargs="*", help=f"default: {' '.join(MODELS)}")
a = ap.parse_args()
out = pathlib.Path(a.out_dir); out.mkdir(parents=True, exist_ok=True)
names = a.names or list(MODELS)
rows = []
for n in names:
    p = subprocess.run(["taskset", "-c", "0", sys.executable, str(HERE / "run_one.py"), n, "--rounds", "15"],
                       capture_output=True, text=True)
    open(out / f"log_{n.replace(':', '_')}.txt", "w").write(p.stdout + "\n--- stderr ---\n" + p.stderr)
    res = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if not res:
        print(n, "FAILED; see log"); continue
    rows.append(json.loads(res[0][7:]))
json.dump(rows, open(out / "results.json", "w"), indent=1)
f = lambda r, k: f"{r[k]:.2f}" if k in r else "—"
print("| model | input | GFLOP | eager NCHW ms | eager CL ms | conv NCHW ms (× best eager) | conv CL ms (×) "
      "| int8 ms (× best eager, × conv) | conv rel err | int8 SQNR dB | problems |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    best = min(r["eager_nchw_ms"], r["eager_cl_ms"])
    problems = "; ".join(f"{k}: {v}" for k, v in r["errors"].items()) + f" {len(r['warnings'])} warn"
    cn = (f"{r['conv_nchw_ms']:.2f} ({best / r['conv_nchw_ms']:.2f}×; paired {r['conv_nchw_pairratio']:.2f}×)"
          if "conv_nchw_ms" in r else "—")
    cc = f"{r['conv_cl_ms']:.2f} ({r['conv_cl_pairratio']:.2f}×)" if "conv_cl_ms" in r else "—"
    q = f"{r['int8_ms']:.2f} ({r['int8_pairratio']:.2f}×, {r['int8_vs_conv_pairratio']:.2f}×)" \
        if "int8_ms" in r and "conv_nchw_ms" in r else (f"{r['int8_ms']:.2f}" if "int8_ms" in r else "—")
    e = f"{r['conv_nchw_err'][1]:.1e}" if "conv_nchw_err" in r else "—"
    s = f"{r['int8_sqnr']:.1f}" if "int8_sqnr" in r else "—"
    print(f"| {r['name']} | {'×'.join(map(str, r['shape'][2:]))} | {r['gflops']:.2f} | {r['eager_nchw_ms']:.2f} | "
          f"{r['eager_cl_ms']:.2f} | {cn} | {cc} | {q} | {e} | {s} | {problems} |")
