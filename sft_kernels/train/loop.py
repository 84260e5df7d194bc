"""Training and distillation of SFTNet for ×4 SR (`sft-kernels train`).

L1 loss, Adam, linear warm-up then cosine decay, seeded and resumable (model, its EMA, optimizer, schedule,
sampler and step are checkpointed), tqdm progress with loss and PSNR, CPU or GPU. Evaluation and export use
an exponential moving average of the weights (`ema`): on 16 photos single-step weights swing by up to 1 dB on
an eval image from one checkpoint to the next; the average does not. Under `torchrun` it runs
DistributedDataParallel (gloo on the CPU, nccl on GPUs); rank 0 logs, evaluates and saves.

With a teacher (`--teacher`), the loss adds output (pixel) distillation and feature distillation on the
trunk features, through a 1×1 adapter when the widths differ:
    L = L1(S(x), y) + w_out · L1(S(x), T(x)) + w_feat · L1(A(trunk_S(x)), trunk_T(x))
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import EVAL_IMAGES, TRAIN_IMAGES, PatchSampler, photo_labels, sr_pair
from ..data.folders import MARGIN, FolderPatchSampler, index_folders
from ..data.images import imresize
from ..metrics import psnr, ssim
from ..models import SFTNet, background_seg
from ..transforms.prune import PruneConfig, prune_
from ..transforms.restore import restore_


@dataclass
class TrainConfig:
    out: str = "runs/teacher"
    variant: str = "pytorch"
    num_blocks: int = 16
    channels: int = 64
    steps: int = 3000
    batch: int = 16
    patch: int = 24
    lr: float = 4e-4
    min_lr: float = 1e-6
    warmup: int = 100
    seed: int = 0
    eval_every: int = 250
    ckpt_every: int = 50
    threads: int = 0
    device: str = "cpu"
    teacher: Optional[str] = None  # a shipped model name or an SFTNet checkpoint path to distill from
    init: Optional[str] = None  # start from these weights (shipped name or checkpoint path): fine-tuning
    w_out: float = 1.0
    w_feat: float = 0.5
    ema: float = 0.999  # decay of the weight average used for eval and export (0 = off: the raw weights)
    detail: float = 0.5  # share of patches drawn where bicubic misses most (PatchSampler)
    zooms: tuple = ()  # also train on each photo shrunk by these factors (PatchSampler)
    data: tuple = ()  # folders of photos to train on instead of the bundled set (data/folders.py)
    amp: str = "none"  # "bf16": forward under bfloat16 autocast (AMX/tensor cores); weights, Adam and EMA stay fp32
    qat: bool = False  # train through int8 fake quantization (prepare_qat_; ranges calibrated on training patches)
    prune: float = 0.0  # final sparsity of a gradual (AGP) magnitude pruning run (prune_), 0 = off
    prune_pattern: str = "unstructured"  # unstructured | block | n:m (2:4, at once)
    prune_until: float = 0.6  # fraction of the steps by which the final sparsity is reached
    prune_every: int = 25  # steps between pruning steps
    prune_channels: float = 0.0  # structured: remove this fraction of every channel group at the start (prune_)
    factorize: float = 0.0  # spatial SVD of the trunk's 3x3 convs to this fraction of their MACs (factorize_), 0 = off
    separable: int = 0  # the trunk's 3x3 convs become depthwise-separable with this multiplier (to_separable_)


def forward_features(model: SFTNet, lr: torch.Tensor) -> tuple:
    """(SR output, trunk features) in one pass, with the background prior."""
    seg = background_seg(lr)
    cond = model.CondNet(seg)
    fea = model.conv0(lr)
    trunk = model.trunk_features(fea, cond)
    return model.HR_branch(fea + trunk), trunk


@torch.no_grad()
def evaluate(model: nn.Module, names=EVAL_IMAGES, device="cpu") -> dict:
    """PSNR / SSIM on Y (BT.601), crop 4, per eval image, for the model and for bicubic upscaling. `names`: bundled
    photo names or image files (keyed by their stem, made unique: datasets.photo_labels; see datasets.sr_pair)."""
    model.eval()
    out = {}
    for name, label in zip(names, photo_labels(names)):
        lr, hr = sr_pair(name)
        x = lr.unsqueeze(0).to(device).contiguous(memory_format=torch.channels_last)
        sr = model(x).float().clamp(0, 1).cpu()[0]
        bic = imresize(lr, 4).clamp(0, 1)
        out[label] = dict(psnr=psnr(sr, hr, crop_border=4), ssim=ssim(sr, hr, crop_border=4),
                          bicubic_psnr=psnr(bic, hr, crop_border=4), bicubic_ssim=ssim(bic, hr, crop_border=4))
    return out


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _lr_lambda(cfg: TrainConfig):
    def f(step):
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return (cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))) / cfg.lr

    return f


def _dist():
    """(rank, world) from torchrun's environment, initialising the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return int(os.environ.get("RANK", "0")), world


# Settings that shape the model, its optimizer or what a step computes: a run resumes only with the same ones.
_RESUME_SAME = ("variant", "num_blocks", "channels", "batch", "patch", "teacher", "qat", "prune", "prune_pattern",
                "prune_channels", "factorize", "separable", "amp", "ema")


def _check_resume(cfg: TrainConfig, saved: dict, path: str) -> None:
    """Name the setting that differs from the run being resumed (a mismatch had surfaced as a load_state_dict or
    optimizer error listing tensors)."""
    now = dataclasses.asdict(cfg)
    changed = [k for k in _RESUME_SAME if k in saved and saved[k] != now[k]]
    if changed:
        what = ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} (now {now[k]!r})" for k in changed)
        raise ValueError(f"--out {cfg.out!r} holds a run ({path}) started with {what}: resume it with the same "
                         "settings, or pass another --out for a new run")


def _check_sizes(cfg: TrainConfig) -> None:
    """The run's counts and sizes, checked before anything is built (a zero had failed deep in the first step)."""
    for flag, value, least in (("--steps", cfg.steps, 1), ("--batch", cfg.batch, 1), ("--patch", cfg.patch, 1),
                               ("--num-blocks", cfg.num_blocks, 1), ("--channels", cfg.channels, 1),
                               ("--warmup", cfg.warmup, 0), ("--eval-every", cfg.eval_every, 0),
                               ("--ckpt-every", cfg.ckpt_every, 0), ("--threads", cfg.threads, 0)):
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{flag} must be an integer >= {least}, got {value!r}")
    if cfg.lr <= 0 or cfg.min_lr < 0:
        raise ValueError(f"--lr must be > 0 and --min-lr >= 0, got {cfg.lr} and {cfg.min_lr}")


def train(cfg: TrainConfig, progress: bool = True, log=print) -> dict:
    rank, world = _dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    _check_sizes(cfg)
    if cfg.factorize and cfg.separable:
        raise ValueError("--factorize and --separable both rebuild the trunk's 3x3 convs: pick one")
    if not 0 <= cfg.factorize < 1 or cfg.separable < 0:
        raise ValueError(f"--factorize {cfg.factorize} must lie in (0, 1) (a MAC ratio) and --separable "
                         f"{cfg.separable} be a multiplier >= 1 (0 = off)")
    torch.manual_seed(cfg.seed)
    model = SFTNet(cfg.variant, cfg.num_blocks, cfg.channels)
    if cfg.init:  # a resume below overrides these weights with the run's own
        from ..models.pretrained import resolve_model

        init = resolve_model(cfg.init)
        if (init.variant, init.num_blocks, init.channels) != (cfg.variant, cfg.num_blocks, cfg.channels):
            raise ValueError(f"--init {cfg.init!r} is a {init.variant} SFTNet with {init.num_blocks} blocks x "
                             f"{init.channels} channels; pass the same --variant/--num-blocks/--channels")
        sd = init.state_dict()
        restore_(model, sd)  # a channel-pruned or pruned init keeps its shapes and masks
        model.load_state_dict(sd)
    if cfg.prune_channels:  # one shot, then the run fine-tunes the smaller model
        report = prune_(model, PruneConfig(pattern="channel", sparsity=cfg.prune_channels))
        model.fused = False
        if rank == 0:
            log(f"channel pruning: {report.stats['params_before']} -> {report.stats['params_after']} parameters")
    if cfg.factorize or cfg.separable:  # one shot from the (init) weights, then the run fine-tunes the pairs
        _decompose_trunk(model, cfg, log if rank == 0 else (lambda *a: None))
    if cfg.qat:  # before the optimizer's and EMA's copies: both see the fake-quantized model
        _prepare_qat(model, cfg, log if rank == 0 else (lambda *a: None))
    if cfg.prune:  # SparseConv2d modules (all weights kept yet) sharing the parameters the optimizer will hold
        _prune_step(model, None, cfg, 0)
    model = model.to(device).to(memory_format=torch.channels_last)
    teacher = adapter = None
    if cfg.teacher:
        from ..models.pretrained import resolve_model

        teacher = resolve_model(cfg.teacher).to(device).eval().requires_grad_(False)
        width, t_width = model.conv0.out_channels, teacher.conv0.out_channels  # trunk widths (pruned or not)
        adapter = (nn.Conv2d(width, t_width, 1) if width != t_width else nn.Identity()).to(device)
    params = list(model.parameters()) + (list(adapter.parameters()) if adapter is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema else None
    if cfg.amp not in ("none", "bf16"):
        raise ValueError(f"amp={cfg.amp!r}: use 'none' (fp32) or 'bf16'")
    if cfg.data:
        index = index_folders(cfg.data, min_side=4 * cfg.patch + 2 * MARGIN)
        if rank == 0:
            log(f"training data: {index.summary()} in {', '.join(map(str, cfg.data))}")
        sampler = FolderPatchSampler(index, cfg.patch, seed=cfg.seed, rank=rank, detail=cfg.detail)
    else:
        sampler = PatchSampler(TRAIN_IMAGES, cfg.patch, seed=cfg.seed, rank=rank, detail=cfg.detail,
                               zooms=tuple(cfg.zooms))
    os.makedirs(cfg.out, exist_ok=True)
    ckpt_path = os.path.join(cfg.out, "last.pt")
    step, history, elapsed = 0, [], 0.0
    if os.path.exists(ckpt_path):  # resume
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        _check_resume(cfg, ck.get("config") or {}, ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        sampler.load_state_dict(ck["sampler"][rank] if rank < len(ck["sampler"]) else ck["sampler"][0])
        if adapter is not None and ck.get("adapter"):
            adapter.load_state_dict(ck["adapter"])
        if ema is not None:
            ema.load_state_dict(ck["ema"] if ck.get("ema") else ck["model"])
        step, history, elapsed = ck["step"], ck["history"], ck.get("elapsed", 0.0)
        if rank == 0:
            log(f"resumed {ckpt_path} at step {step}")
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model)
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
    t0 = time.time()
    until = round(cfg.prune_until * cfg.steps)  # the step at which pruning reaches its final sparsity
    while step < cfg.steps:
        # every prune_every steps and at `until` itself (a run shorter than prune_every had stayed dense)
        if cfg.prune and (step % cfg.prune_every == 0 or step == until):
            s = _prune_step(model, ema, cfg, step)
            if rank == 0 and (step == until or (bar is None and step < until)):
                (bar.write if bar is not None else log)(f"step {step}: pruned to {s:.1%} sparsity")
        net.train()
        lr_img, hr_img = sampler.batch(cfg.batch)
        lr_img = lr_img.to(device).contiguous(memory_format=torch.channels_last)
        hr_img = hr_img.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
            if teacher is None:
                sr = net(lr_img)
            else:
                sr, feat = forward_features(model, lr_img)
                with torch.no_grad():
                    t_sr, t_feat = forward_features(teacher, lr_img)
                feat_loss = F.l1_loss(adapter(feat).float(), t_feat.float())
        sr = sr.float()  # losses in fp32
        loss = F.l1_loss(sr, hr_img)
        if teacher is not None:
            loss = loss + cfg.w_out * F.l1_loss(sr, t_sr.float()) + cfg.w_feat * feat_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:  # the short warm-up of the decay lets early averages follow the fast initial descent
            _ema_update(ema, model, min(cfg.ema, (1 + step) / (10 + step)))
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr(sr.detach().clamp(0, 1), hr_img):.2f}",
                            lr=f"{sched.get_last_lr()[0]:.1e}")
        # evaluated before the checkpoint, so a checkpoint's history holds its own step's eval (a resumed or
        # re-run finished run had lost it)
        if rank == 0 and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps):
            ev = evaluate(ema if ema is not None else model, device=device)
            history.append(dict(step=step, loss=loss.item(), eval=ev))
            log(f"step {step}: " + ", ".join(f"{k} {v['psnr']:.2f} dB (bicubic {v['bicubic_psnr']:.2f})"
                                             for k, v in ev.items()))
        if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or step == cfg.steps:
            _save(cfg, rank, world, ckpt_path, model, ema, adapter, opt, sched, sampler, step, history,
                  elapsed + time.time() - t0)
    if bar is not None:
        bar.close()
    elapsed += time.time() - t0
    if rank == 0:
        with open(os.path.join(cfg.out, "summary.json"), "w") as f:
            json.dump(dict(config=dataclasses.asdict(cfg), history=history, seconds=elapsed, world=world), f, indent=1)
    if world > 1:
        torch.distributed.barrier()
    return dict(model=model, ema=ema, history=history, seconds=elapsed)


def _trunk_3x3(module: nn.Module, name: str) -> bool:
    return name.startswith("sft_branch") and module.kernel_size == (3, 3)


def _decompose_trunk(model: SFTNet, cfg: TrainConfig, log) -> None:
    """factorize_ / to_separable_ on the residual trunk's 3x3 convs (the LR-resolution bulk of SFTNet's MACs)."""
    from ..transforms import SeparableConfig, SVDConfig, factorize_, to_separable_

    if cfg.factorize:
        report = factorize_(model, SVDConfig(mac_ratio=cfg.factorize, filter_fn=_trunk_3x3))
    else:
        report = to_separable_(model, SeparableConfig(multiplier=cfg.separable, filter_fn=_trunk_3x3))
    done = [r for r in report.rows if r.action in ("factorized", "separable")]
    before = sum(r.stats["macs_before"] for r in done)
    after = sum(r.stats["macs_after"] for r in done)
    log(f"{report.transform}: {len(done)} trunk convs, their MACs x{after / max(1, before):.2f}")


def _prune_step(model, ema, cfg: TrainConfig, step: int) -> float:
    """Prune the model to its AGP sparsity at `step` (n:m: at once) and give the EMA copy the same masks; returns
    the sparsity."""
    from ..nn.sparse import SparseConv2d
    from ..transforms.prune import agp_sparsity

    final = cfg.prune if cfg.prune_pattern != "n:m" else 0.5
    s = final if cfg.prune_pattern == "n:m" else agp_sparsity(step, final, round(cfg.prune_until * cfg.steps))
    prune_(model, PruneConfig(sparsity=min(s, 0.999), pattern=cfg.prune_pattern))
    model.fused = False  # train the module-by-module forward
    if ema is not None:
        masks = {n: m.mask for n, m in model.named_modules() if isinstance(m, SparseConv2d)}
        for n, m in ema.named_modules():
            if n in masks:
                m.mask.copy_(masks[n])
                m.apply_mask_()
    return s


def _prepare_qat(model, cfg: TrainConfig, log) -> None:
    """prepare_qat_ with activation ranges from training patches (another seed than the run's batches)."""
    from ..transforms.qat import prepare_qat_

    if cfg.data:
        index = index_folders(cfg.data, min_side=4 * 32 + 2 * MARGIN)
        calib = FolderPatchSampler(index, 32, seed=cfg.seed + 1)
    else:
        calib = PatchSampler(TRAIN_IMAGES, 32, seed=cfg.seed + 1)
    batches = [calib.batch(8)[0] for _ in range(4)]
    report = prepare_qat_(model, calibration=batches)
    log(f"QAT: {len(report.names('fake-quantized'))} convs train through int8 fake quantization")


def _save(cfg, rank, world, path, model, ema, adapter, opt, sched, sampler, step, history, elapsed):
    states = [sampler.state_dict()]
    if world > 1:  # every rank's sampler state, so a resume continues each stream
        states = [None] * world
        torch.distributed.all_gather_object(states, sampler.state_dict())
    if rank == 0:
        tmp = path + ".tmp"
        torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(), sampler=states,
                        ema=ema.state_dict() if ema is not None else None,
                        adapter=adapter.state_dict() if adapter is not None else None, step=step,
                        history=history, elapsed=elapsed, config=dataclasses.asdict(cfg)), tmp)
        os.replace(tmp, path)  # atomic: a kill mid-save never leaves a broken checkpoint
