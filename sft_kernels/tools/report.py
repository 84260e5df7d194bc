"""`sft-kernels report`: quality, size, computation, time, memory and energy of SR models on every backend.

For each model (a shipped weights name, a checkpoint path, or "bicubic" as the baseline) and each backend
("eager" = the unconverted PyTorch model, or a backend name from `sft_kernels.backends`, the model converted
with `convert_` on a deep copy) it measures:

- quality: `sft_kernels.train.evaluate` (PSNR / SSIM on Y, 4-pixel border cropped, per eval photo), run on
  the converted model itself, so a backend that changes the numbers shows it;
- parameters, the weights file's size in bytes, conv MACs at 1×3×L×L (per model);
- latency (median, p10, p90, threads), peak memory and energy per call at 1×3×L×L
  (`sft_kernels.metrics.runtime` says exactly what each counts; energy is a hardware counter or
  "unavailable", never an estimate);
- seconds per leaf layer of the eager model at 1×3×L×L.

It writes `report.md` (tables), `report.json` (everything, raw), `psnr_vs_latency.png` and
`layer_times_<model>.png` into `out_dir`.
"""
from __future__ import annotations

import copy
import datetime
import json
import math
import os
import platform
import re
import statistics
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .. import backends as _backends
from ..transforms import convert_
from ..metrics import conv_macs, count_params, energy, latency, layer_times, model_size_bytes, peak_memory

__all__ = ["build_report", "default_backends", "load_model"]

BICUBIC = "bicubic"
EAGER = "eager"


class _Bicubic(nn.Module):
    """MATLAB-style bicubic ×4 as a model, so the baseline goes through the same `evaluate`."""

    def forward(self, x):
        from ..data.images import imresize

        return torch.stack([imresize(img.contiguous(), 4) for img in x])


# ---------------------------------------------------------------- models and backends
def load_model(name: str) -> tuple:
    """(model in eval mode, info) for a shipped weights name or a checkpoint path (architecture from a model card
    beside it, else its keys). `info`: source, weights_path, size_bytes, architecture."""
    from ..models import pretrained as shipped_weights

    if name in shipped_weights.shipped():
        card = shipped_weights.card(name)
        path = Path(shipped_weights.WEIGHTS_DIR) / card["file"]
        return shipped_weights.pretrained(name), dict(source=f"shipped weights {name!r}", weights_path=str(path),
                                                      size_bytes=os.path.getsize(path),
                                                      architecture=card["architecture"])
    path = Path(name)
    if path.is_file():
        model = shipped_weights.model_from_file(path)
        arch = dict(variant=model.variant, num_blocks=model.num_blocks, channels=model.channels)
        return model, dict(source=f"checkpoint {str(path)!r}", weights_path=str(path),
                           size_bytes=os.path.getsize(path), architecture=arch)
    raise ValueError(f"model {name!r} is not a shipped weights name (shipped: {shipped_weights.shipped() or 'none yet'}"
                     f"; they live in {shipped_weights.WEIGHTS_DIR}), not {BICUBIC!r}, and not a checkpoint file")


def default_backends() -> list:
    """"eager" plus every backend available here, without the Triton interpreter (CPU-only machines)."""
    names = [EAGER] + [b for b in _backends.available() if not (b == "triton" and not torch.cuda.is_available())]
    if torch.cuda.is_available() and "cpu" in names:
        names.append(f"{EAGER}@cpu")  # the CPU baseline for the "cpu" backend on a GPU machine
    return names


def _backend_device(spec: str) -> tuple:
    """'name' or 'name@device' -> (name, device); validated."""
    name, _, dev = spec.partition("@")
    if name != EAGER and name not in _backends.BACKENDS:
        raise ValueError(f"unknown backend {name!r}: use {EAGER!r} (unconverted model) or one of "
                         f"{list(_backends.BACKENDS)} (available here: {_backends.available()})")
    if name != EAGER and name not in _backends.available():
        raise ValueError(f"backend {name!r} is not available here: {_backends.status()[name][1]}")
    if not dev:  # the "cpu" backend runs CPU tensors; everything else runs on the GPU when there is one
        dev = "cpu" if name == "cpu" or not torch.cuda.is_available() else "cuda"
    if dev not in ("cpu", "cuda"):
        raise ValueError(f"device in backend spec {spec!r} must be 'cpu' or 'cuda'")
    if dev == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"backend spec {spec!r} needs a CUDA GPU, and none is visible")
    return name, dev


def _label(name: str, used: set) -> str:
    base = Path(name).stem if (os.sep in name or name.endswith((".safetensors", ".pth", ".pt"))) else name
    label, i = base, 2
    while label in used:
        label, i = f"{base}_{i}", i + 1
    used.add(label)
    return label


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def _mean(quality: dict, key: str) -> float:
    return statistics.fmean(v[key] for v in quality.values())


def _cpu_brand() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------- the report
def build_report(models: Sequence[str] = ("teacher",), backends: Optional[Sequence[str]] = None,
                 out_dir: str = "report", lr_size: int = 128, threads: Optional[int] = None, repeat: int = 5,
                 log: Optional[Callable[[str], None]] = None, photos: Sequence[str] = ()) -> dict:
    """Measure every model on every backend and write report.md, report.json and the PNG plots to out_dir.

    models: shipped weights names, checkpoint paths, or "bicubic" (baseline: quality only).
    backends: "eager" and/or backend names, optionally "name@cpu" / "name@cuda"; default
    `default_backends()`. photos: folders of further held-out photos to score besides china and flower (each
    file's central crop, see datasets.sr_pair). Returns the report (the content of report.json plus "files")."""
    import functools

    from ..data.datasets import EVAL_IMAGES, photo_labels, sr_pair
    from ..data.folders import index_folders
    from ..train import evaluate

    log = log or (lambda s: None)
    if isinstance(models, str):
        models = [models]
    if not models:
        raise ValueError("models must name at least one model")
    if not isinstance(lr_size, int) or lr_size < 1:
        raise ValueError(f"lr_size must be a positive int, got {lr_size!r}")
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a positive int, got {repeat!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 0):
        raise ValueError(f"threads must be a non-negative int, got {threads!r}")
    names = tuple(EVAL_IMAGES) + tuple(e.path for e in index_folders(photos).entries) if photos else EVAL_IMAGES
    evaluate = functools.partial(evaluate, names=names)
    specs = list(backends) if backends else default_backends()
    parsed = [(spec, *_backend_device(spec)) for spec in specs]
    for spec, name, dev in parsed:
        if name == "triton" and dev == "cpu":
            log(f"{spec}: no CUDA GPU, so the Triton kernels run through the interpreter (correctness only): the "
                "eval photos take minutes per model and its times are not kernel speeds")
    loaded = []  # (label, name, model or None, info), loaded up front so a bad name fails before any timing
    used: set = set()
    for name in models:
        if name == BICUBIC:
            loaded.append((_label(BICUBIC, used), BICUBIC, None, dict(source="MATLAB-style bicubic x4 (baseline)")))
        else:
            model, info = load_model(name)
            loaded.append((_label(name, used), name, model, info))

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        report = _measure(loaded, parsed, lr_size, repeat, evaluate, log)
    finally:
        torch.set_num_threads(old_threads)
    labels = photo_labels(names)
    lr_shapes = {lab: list(sr_pair(n)[0].shape[1:]) for n, lab in zip(names, labels)}
    report["meta"] = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        torch=torch.__version__, sft_kernels=_version(), python=platform.python_version(), cpu=_cpu_brand(),
        gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        threads=threads or old_threads, lr_size=lr_size, repeat=repeat, warmup=2,
        backends=specs, eval_images=labels, eval_lr_shapes=lr_shapes)
    return _write(report, Path(out_dir))


def _version() -> str:
    from .. import __version__

    return __version__


def _measure(loaded, parsed, lr_size, repeat, evaluate, log) -> dict:
    gen = torch.Generator().manual_seed(0)
    x_cpu = torch.rand(1, 3, lr_size, lr_size, generator=gen)
    models_out, rows, bicubic_q = {}, [], None
    for label, name, model, info in loaded:
        if model is None:
            continue
        log(f"{label}: {info['source']}")
        entry = dict(name=name, **info, params=count_params(model), tensor_bytes=model_size_bytes(model),
                     macs=conv_macs(model, x_cpu))
        lt_dev = "cuda" if torch.cuda.is_available() else "cpu"  # eager on the device eager runs on by default
        lt_model = copy.deepcopy(model).to(lt_dev) if lt_dev != "cpu" else model
        lt = layer_times(lt_model, x_cpu.to(lt_dev), repeat=min(3, repeat))
        entry["layer_times"] = [dict(name=n, type=t, seconds=s) for n, t, s in lt]
        entry["layer_times_device"] = lt_dev
        with torch.no_grad():
            ref_out = model(x_cpu.contiguous(memory_format=torch.channels_last)).float()
        for spec, backend, dev in parsed:
            log(f"  {spec} on {dev}: quality, latency, peak memory, energy")
            m = copy.deepcopy(model).to(dev)
            conversion = None
            if backend != EAGER:
                rep = convert_(m, backend=backend)
                conversion = dict(converted=len(rep.converted), skipped=[list(s) for s in rep.skipped])
            m.eval()
            q = evaluate(m, device=dev)
            if bicubic_q is None:
                bicubic_q = {k: dict(psnr=v["bicubic_psnr"], ssim=v["bicubic_ssim"]) for k, v in q.items()}
            x = x_cpu.to(dev).contiguous(memory_format=torch.channels_last)

            def fn(m=m, x=x):
                with torch.no_grad():
                    return m(x)

            with torch.no_grad():
                diff = (fn().float().cpu() - ref_out).abs().max().item()
            lat = latency(fn, warmup=2, repeat=repeat, device=dev)
            mem = peak_memory(fn, device=dev)
            en = energy(fn, repeat=1, min_time_s=1.0, device=dev)
            rows.append(dict(model=label, backend=spec, device=dev, conversion=conversion,
                             quality={k: dict(psnr=v["psnr"], ssim=v["ssim"]) for k, v in q.items()},
                             mean_psnr=_mean(q, "psnr"), mean_ssim=_mean(q, "ssim"),
                             max_abs_diff_vs_eager=diff, latency=lat, peak_memory=mem, energy=en))
            del m
        models_out[label] = entry
    if bicubic_q is None:  # only "bicubic" was asked for
        q = evaluate(_Bicubic())
        bicubic_q = {k: dict(psnr=v["bicubic_psnr"], ssim=v["bicubic_ssim"]) for k, v in q.items()}
    bicubic = dict(quality=bicubic_q, mean_psnr=_mean(bicubic_q, "psnr"), mean_ssim=_mean(bicubic_q, "ssim"))
    for label, name, model, info in loaded:
        if model is None:
            models_out[label] = dict(name=name, **info, params=0, tensor_bytes=0, size_bytes=None, macs=None,
                                     quality=bicubic_q, mean_psnr=bicubic["mean_psnr"],
                                     mean_ssim=bicubic["mean_ssim"], layer_times=[])
    # keep the models in the order they were asked for
    models_out = {label: models_out[label] for label, *_ in loaded}
    return dict(models=models_out, rows=rows, bicubic=bicubic)


# ---------------------------------------------------------------- output
def _fmt_int(v) -> str:
    return "-" if v is None else f"{v:,}"


def _fmt(v, spec=".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


def _markdown(r: dict, files: dict) -> str:
    meta = r["meta"]
    L = meta["lr_size"]
    imgs = meta["eval_images"]
    shapes = ", ".join(f"{n} {s[0]}x{s[1]}" for n, s in meta["eval_lr_shapes"].items())
    out = ["# sft_kernels report", "",
           f"{meta['date']} · torch {meta['torch']} · sft_kernels {meta['sft_kernels']} · CPU: {meta['cpu']} · "
           f"GPU: {meta['gpu'] or 'none'} · {meta['threads']} torch thread(s)", "",
           f"Latency, peak memory and energy: one 1x3x{L}x{L} input (batch 1); latency = median of "
           f"{meta['repeat']} timed calls after {meta['warmup']} warm-up calls (p10-p90 in brackets). "
           f"Quality: PSNR (dB) / SSIM on Y (BT.601), 4-pixel border cropped, x4 from the eval photos "
           f"(LR {shapes}), mean over photos. MACs: convolutions at 1x3x{L}x{L}.", ""]
    out += ["## Models", "",
            "| model | source | params | weights file (bytes) | conv MACs | PSNR | SSIM |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for label, m in r["models"].items():
        if "mean_psnr" in m:
            p, s = m["mean_psnr"], m["mean_ssim"]
        else:
            mine = [row for row in r["rows"] if row["model"] == label]
            mine.sort(key=lambda row: not row["backend"].startswith(EAGER))  # eager's numbers, if measured
            p = mine[0]["mean_psnr"] if mine else None
            s = mine[0]["mean_ssim"] if mine else None
        macs = "-" if m.get("macs") is None else f"{m['macs'] / 1e9:.3f} G"
        out.append(f"| {label} | {m['source']} | {_fmt_int(m['params'])} | {_fmt_int(m.get('size_bytes'))} | "
                   f"{macs} | {_fmt(p)} | {_fmt(s, '.4f')} |")
    b = r["bicubic"]
    if "bicubic" not in r["models"]:
        out.append(f"| bicubic (baseline) | MATLAB-style bicubic x4 | 0 | - | - | {_fmt(b['mean_psnr'])} | "
                   f"{_fmt(b['mean_ssim'], '.4f')} |")
    out += ["", "## Per backend", "",
            "| model | backend | device | PSNR | SSIM | max abs diff vs eager | latency ms (p10-p90) | threads | "
            "peak memory MiB | energy J/call |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        lat, mem, en = row["latency"], row["peak_memory"], row["energy"]
        ms = f"{lat['median_s'] * 1e3:.2f} ({lat['p10_s'] * 1e3:.2f}-{lat['p90_s'] * 1e3:.2f})"
        mib = "n/a" if mem["bytes"] is None else f"{mem['bytes'] / 2 ** 20:.2f}"
        joules = "n/a" if en["joules"] is None else f"{en['joules']:.4g}"
        out.append(f"| {row['model']} | {row['backend']} | {row['device']} | {_fmt(row['mean_psnr'])} | "
                   f"{_fmt(row['mean_ssim'], '.4f')} | {row['max_abs_diff_vs_eager']:.2e} | {ms} | "
                   f"{lat['threads']} | {mib} | {joules} |")
    out += ["", "## Quality per eval photo (PSNR dB / SSIM)", "",
            "| model | backend | " + " | ".join(imgs) + " |", "|---|---|" + "---:|" * len(imgs)]
    for row in r["rows"]:
        out.append(f"| {row['model']} | {row['backend']} | " + " | ".join(
            f"{_fmt(row['quality'][n]['psnr'])} / {_fmt(row['quality'][n]['ssim'], '.4f')}" for n in imgs) + " |")
    out.append("| bicubic | - | " + " | ".join(
        f"{_fmt(b['quality'][n]['psnr'])} / {_fmt(b['quality'][n]['ssim'], '.4f')}" for n in imgs) + " |")
    out += ["", "## PSNR gain over bicubic per eval photo (dB)", "",
            "| model | backend | " + " | ".join(imgs) + " |", "|---|---|" + "---:|" * len(imgs)]
    for row in r["rows"]:
        out.append(f"| {row['model']} | {row['backend']} | " + " | ".join(
            f"{row['quality'][n]['psnr'] - b['quality'][n]['psnr']:+.2f}" for n in imgs) + " |")
    for label, m in r["models"].items():
        lt = m.get("layer_times") or []
        if not lt:
            continue
        total = sum(t["seconds"] for t in lt) or 1.0
        top = sorted(lt, key=lambda t: -t["seconds"])[:10]
        out += ["", f"## Slowest layers of {label} (eager on {m['layer_times_device']}, 1x3x{L}x{L}, "
                f"{len(lt)} leaf layers)", "",
                "| layer | type | ms | % of leaf-layer time |", "|---|---|---:|---:|"]
        out += [f"| {t['name']} | {t['type']} | {t['seconds'] * 1e3:.3f} | {100 * t['seconds'] / total:.1f} |"
                for t in top]
    mem_how = sorted({row["peak_memory"]["how"].split(" (")[0] for row in r["rows"]})
    en_how = sorted({row["energy"]["how"] for row in r["rows"]})
    out += ["", "## How these were measured", "",
            "- Peak memory: bytes allocated during one call above the level at its start (activations, "
            "workspaces, output; not the weights). " + "; ".join(mem_how) + ". See "
            "`sft_kernels/metrics/runtime.py` for what is and is not counted.",
            "- Energy: hardware counter delta per call, never estimated: " + ("; ".join(en_how) or "-") + ".",
            "- Weights file: bytes of the checkpoint on disk; params: scalar parameters.", "",
            f"![PSNR vs latency]({files['psnr_vs_latency']})", ""]
    out += [f"![layer times of {k}]({v})" for k, v in files["layer_times"].items()]
    return "\n".join(out) + "\n"


def pareto(points: list) -> list:
    """Indices of the points (cost, quality) no other point beats on both (lower cost, higher quality)."""
    return [i for i, (c, q) in enumerate(points)
            if not any((c2 <= c and q2 >= q) and (c2 < c or q2 > q) for c2, q2 in points)]


def _plot_psnr_latency(r: dict, path: Path) -> None:
    """PSNR against latency (per model and backend) and against size (per model), Pareto fronts marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8))
    pts = [(row["latency"]["median_s"] * 1e3, row["mean_psnr"], f"{row['model']}/{row['backend']}")
           for row in r["rows"]]
    front = set(pareto([(ms, p) for ms, p, _ in pts]))
    for i, (ms, p, label) in enumerate(pts):
        ax.scatter([ms], [p], s=60 if i in front else 30, color=f"C{i % 10}", zorder=3, label=label,
                   edgecolors="k" if i in front else "none")
        # staggered offsets keep the labels of nearby points (e.g. backends of one model) apart
        ax.annotate(label, (ms, p), textcoords="offset points", xytext=(5, 4 - 11 * (i % 3)), fontsize=7,
                    color=f"C{i % 10}")
    if front:
        f = sorted((pts[i][0], pts[i][1]) for i in front)
        ax.plot([a for a, _ in f], [b for _, b in f], "k:", linewidth=1, label="Pareto front")
    for a in (ax, bx):
        a.axhline(r["bicubic"]["mean_psnr"], color="k", linestyle="--", linewidth=1,
                  label=f"bicubic {r['bicubic']['mean_psnr']:.2f} dB")
        a.grid(alpha=0.3)
        a.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
        a.set_ylabel("mean PSNR on Y, dB (eval photos, crop 4)")
    if pts and max(p[0] for p in pts) > 20 * min(p[0] for p in pts):
        ax.set_xscale("log")
    L = r["meta"]["lr_size"]
    ax.set_xlabel(f"latency, ms (median, 1x3x{L}x{L}, {r['meta']['threads']} thread(s))")
    ax.set_title("quality vs latency (ringed: Pareto front)")
    ax.legend(fontsize=7, loc="best")
    best = {}  # a model's PSNR: its best backend's (backends agree to rounding)
    for row in r["rows"]:
        best[row["model"]] = max(best.get(row["model"], float("-inf")), row["mean_psnr"])
    sizes = [(m["tensor_bytes"], best[label], label) for label, m in r.get("models", {}).items()
             if m.get("tensor_bytes") and label in best]
    sfront = set(pareto([(b, p) for b, p, _ in sizes]))
    for i, (b, p, label) in enumerate(sizes):
        bx.scatter([b / 1e6], [p], s=60 if i in sfront else 30, color=f"C{i % 10}", zorder=3,
                   edgecolors="k" if i in sfront else "none")
        bx.annotate(label, (b / 1e6, p), textcoords="offset points", xytext=(5, 4), fontsize=7, color=f"C{i % 10}")
    bx.set_xlabel("model size, MB (weights as stored in memory)")
    bx.set_title("quality vs size (ringed: Pareto front)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_layers(label: str, entry: dict, lr_size: int, threads: int, path: Path, top: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lt = sorted(entry["layer_times"], key=lambda t: -t["seconds"])[:top]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(lt) + 1.4))
    names = [f"{t['name']} ({t['type']})" for t in lt]
    ax.barh(range(len(lt)), [t["seconds"] * 1e3 for t in lt], color="C0")
    ax.set_yticks(range(len(lt)))
    ax.set_yticklabels(names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per forward (median)")
    ax.set_title(f"{label}: top {len(lt)} of {len(entry['layer_times'])} leaf layers by time "
                 f"(eager on {entry['layer_times_device']}, 1x3x{lr_size}x{lr_size}, {threads} thread(s))",
                 fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write(report: dict, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = dict(markdown="report.md", json="report.json", psnr_vs_latency="psnr_vs_latency.png", layer_times={})
    for label, entry in report["models"].items():
        if entry.get("layer_times"):
            files["layer_times"][label] = f"layer_times_{_safe(label)}.png"
    _plot_psnr_latency(report, out_dir / files["psnr_vs_latency"])
    for label, fname in files["layer_times"].items():
        _plot_layers(label, report["models"][label], report["meta"]["lr_size"], report["meta"]["threads"],
                     out_dir / fname)
    report["files"] = files
    (out_dir / files["json"]).write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / files["markdown"]).write_text(_markdown(report, files))
    report["out_dir"] = str(out_dir)
    return report
