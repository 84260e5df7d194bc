"""Run-time metrics: latency, peak memory, energy and per-layer time of a callable / model.

What each one measures (and what it does not):

- ``latency(fn)``: wall-clock seconds per call (``time.perf_counter``) after ``warmup`` untimed calls;
  median, 10th and 90th percentile over ``repeat`` timed calls, and the torch thread count it ran with.
  On CUDA the device is synchronised before and after every call, so the time includes the kernels.
- ``peak_memory(fn)``: the peak of bytes allocated *during one call*, above the level at its start
  (activations, workspaces, the output; not the weights that already exist).
  On CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
  ``memory_allocated()`` before the call (PyTorch's caching allocator: tensor bytes, not reserved
  cache). On the CPU: one call under the PyTorch profiler with ``profile_memory=True``; every
  allocation and free made through PyTorch's CPU allocator (all tensors, including those the
  ``sft_kernels._C`` extension and oneDNN create with ``at::empty``) is a memory event, and the
  result is the maximum of their running sum in time order. The extension's output-buffer pool (which
  hands out blocks PyTorch's allocator never sees) is switched off for the measured call, so its outputs
  are counted too. Memory allocated outside PyTorch's allocator (malloc inside libraries, the extension's
  thread-local packing buffers, the Python heap) is not seen. Process RSS is not used: its high-water
  mark never falls, so it says nothing about a call after the first one.
- ``energy(fn)``: joules per call from a hardware energy counter read before and after; never
  estimated. CUDA: NVML's total-energy counter of the GPU (``pynvml``, Volta or newer). CPU: Linux
  powercap RAPL package domains (``/sys/class/powercap/intel-rapl:N/energy_uj``, summed over
  packages, wraparound handled with ``max_energy_range_uj``). Both counters cover the whole device /
  package, so other work running at the same time is included. Where no counter can be read the
  result is ``{"joules": None, "how": "unavailable: <why>"}``.
- ``layer_times(model, *inputs)``: seconds per leaf module (a module without children) per forward,
  from forward pre/post hooks timed with ``time.perf_counter`` (median over ``repeat`` runs after one
  warm-up). Work done in ``forward`` outside leaf modules (functional activations, residual adds) is
  not attributed to any layer.
"""
from __future__ import annotations

import contextlib
import glob
import os
import statistics
import time
from typing import Callable, NamedTuple, Optional

import torch
from torch import nn

__all__ = ["latency", "peak_memory", "energy", "layer_times", "LayerTime"]

RAPL_ROOT = "/sys/class/powercap"


class LayerTime(NamedTuple):
    """Time of one leaf module per forward pass: (qualified name, class name, seconds)."""
    name: str
    type: str
    seconds: float


def _cuda_active(device) -> bool:
    """True if `device` is a CUDA device, or (device None) CUDA is initialised in this process."""
    if device is not None:
        return torch.device(device).type == "cuda"
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def _percentile(sorted_vals: list, q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of an already sorted list."""
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def latency(fn: Callable[[], object], warmup: int = 2, repeat: int = 10, device=None) -> dict:
    """Seconds per call of ``fn()``: ``dict(median_s, p10_s, p90_s, repeat, warmup, threads, device)``.

    ``warmup`` untimed calls first, then ``repeat`` timed ones. ``device``: "cuda" synchronises the GPU
    around every call (default: whenever CUDA is initialised in this process).
    """
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a positive int, got {repeat!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")
    cuda = _cuda_active(device)
    for _ in range(warmup):
        fn()
    _sync(cuda)
    samples = []
    for _ in range(repeat):
        _sync(cuda)
        t = time.perf_counter()
        fn()
        _sync(cuda)
        samples.append(time.perf_counter() - t)
    s = sorted(samples)
    return dict(median_s=statistics.median(s), p10_s=_percentile(s, 10), p90_s=_percentile(s, 90),
                repeat=repeat, warmup=warmup, threads=torch.get_num_threads(),
                device="cuda" if cuda else "cpu")


def _cpu_memory_events(prof) -> list:
    """(time_ns, nbytes) of every CPU allocator event the profiler recorded, in time order."""
    events = prof.profiler.kineto_results.events()  # raw events; FunctionEvents fold allocations into ops
    out = [(e.start_ns(), e.nbytes()) for e in events
           if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    out.sort(key=lambda t: t[0])
    return out


@contextlib.contextmanager
def _output_pool_off():
    """Outputs of the C++ extension come from its own buffer pool, invisible to PyTorch's allocator: route
    them through at::empty while measuring (a no-op where the extension is not loaded)."""
    try:
        set_cap = torch.ops.sft_cpu.buffer_pool_set_capacity_mb
    except (AttributeError, RuntimeError):
        yield
        return
    previous = set_cap(0)
    try:
        yield
    finally:
        set_cap(previous)


def peak_memory(fn: Callable[[], object], device=None) -> dict:
    """Peak bytes allocated during one call of ``fn()`` above the level at its start:
    ``dict(bytes, how)`` (``bytes`` None with the reason in ``how`` when it cannot be measured).
    See the module docstring for exactly what is counted on the CPU and on CUDA."""
    if _cuda_active(device):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return dict(bytes=int(peak - base), total_peak_bytes=int(peak),
                    how="cuda: torch.cuda.max_memory_allocated() after reset, minus memory_allocated() before")
    try:
        from torch.profiler import ProfilerActivity, profile

        with _output_pool_off(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = _cpu_memory_events(prof)
    except Exception as e:  # noqa: BLE001 - a profiler that cannot do this is reported, not guessed around
        return dict(bytes=None, how=f"unavailable: torch profiler memory events failed "
                                    f"({type(e).__name__}: {str(e)[:120]})")
    running = peak = 0
    for _, n in events:
        running += n
        peak = max(peak, running)
    return dict(bytes=int(peak), how="cpu: peak running sum of PyTorch CPU-allocator events during the call "
                                     f"(torch profiler, profile_memory=True; {len(events)} events)")


# ---------------------------------------------------------------- energy counters
def _nvml_handle(pynvml, index: int):
    """NVML handle of CUDA device `index`, matched by PCI bus id (CUDA and NVML numbering can differ)."""
    try:
        p = torch.cuda.get_device_properties(index)
        bus = f"{p.pci_domain_id:08x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
        return pynvml.nvmlDeviceGetHandleByPciBusId(bus)
    except Exception:  # noqa: BLE001 - older torch without pci ids, or a bus-id format mismatch
        return pynvml.nvmlDeviceGetHandleByIndex(index)


def _rapl_domains(root: Optional[str] = None) -> tuple:
    """([(energy_uj path, max_energy_range_uj)] of RAPL package domains, why-not string)."""
    root = RAPL_ROOT if root is None else root
    dirs = sorted(d for d in glob.glob(os.path.join(root, "intel-rapl:*"))
                  if os.path.basename(d).count(":") == 1)  # intel-rapl:N = a package; intel-rapl:N:M = core/dram...
    if not dirs:
        return [], f"no RAPL package domains under {root} (not an Intel/AMD host with powercap, or a VM)"
    doms, problems = [], []
    for d in dirs:
        try:
            name = open(os.path.join(d, "name")).read().strip()
        except OSError:
            name = "package"
        if not name.startswith("package"):
            continue
        path = os.path.join(d, "energy_uj")
        try:
            int(open(path).read())
            rng = int(open(os.path.join(d, "max_energy_range_uj")).read())
        except (OSError, ValueError) as e:
            problems.append(f"{path}: {type(e).__name__}: {getattr(e, 'strerror', None) or e}")
            continue
        doms.append((path, rng))
    if not doms:
        return [], "RAPL package counters not readable (" + "; ".join(problems or ["no package domain"]) + \
            "; reading energy_uj usually needs root)"
    return doms, ""


def _energy_counter(device=None) -> tuple:
    """(read, joules_between, how): ``read()`` samples the counter and ``joules_between(a, b)`` turns two
    samples into joules (handling RAPL wraparound); or (None, None, "unavailable: <why>") when no
    hardware counter can be read here."""
    if _cuda_active(device):
        try:
            import pynvml
        except ImportError:
            return None, None, "unavailable: CUDA device but pynvml is not installed (pip install nvidia-ml-py)"
        try:
            pynvml.nvmlInit()
            dev = torch.device(device) if device is not None else torch.device("cuda")
            idx = dev.index if dev.index is not None else torch.cuda.current_device()
            h = _nvml_handle(pynvml, idx)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h)  # mJ since driver load; raises if unsupported
            name = pynvml.nvmlDeviceGetName(h)
        except Exception as e:  # noqa: BLE001 - NVMLError subclasses; any failure means "cannot read"
            return None, None, f"unavailable: NVML total energy counter not readable ({type(e).__name__}: {e})"
        name = name.decode() if isinstance(name, bytes) else name
        return (lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h)), (lambda a, b: (b - a) / 1e3), \
            f"nvml: total energy counter of GPU {idx} ({name}), whole device"
    doms, why = _rapl_domains()
    if not doms:
        return None, None, f"unavailable: {why}"

    def read():
        return [int(open(p).read()) for p, _ in doms]

    def joules_between(a, b):
        # one wraparound at most between two samples (the range lasts minutes even at full power)
        return sum(y - x if y >= x else y + rng - x for x, y, (_, rng) in zip(a, b, doms)) / 1e6

    return read, joules_between, (f"rapl: sum of {len(doms)} package domain(s) "
                                  f"{[os.path.basename(os.path.dirname(p)) for p, _ in doms]}, whole package")


def energy(fn: Callable[[], object], repeat: int = 1, min_time_s: float = 0.0, device=None) -> dict:
    """Joules per call of ``fn()`` from a hardware counter: ``dict(joules, how, calls, seconds, watts)``,
    or ``dict(joules=None, how="unavailable: <why>")`` (``fn`` is then not run). Never an estimate.

    Calls ``fn`` at least ``repeat`` times and for at least ``min_time_s`` seconds (counters tick every
    ~1 ms (RAPL) to ~100 ms (NVML), so short calls need a longer window), and divides the counter delta
    by the number of calls. The counter covers the whole package/GPU, idle power and other processes
    included.
    """
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a positive int, got {repeat!r}")
    read, joules_between, how = _energy_counter(device)
    if read is None:
        return dict(joules=None, how=how)
    cuda = _cuda_active(device)
    _sync(cuda)
    e0 = read()
    t0 = time.perf_counter()
    calls = 0
    while calls < repeat or time.perf_counter() - t0 < min_time_s:
        fn()
        calls += 1
    _sync(cuda)
    e1 = read()
    seconds = time.perf_counter() - t0
    total = joules_between(e0, e1)
    return dict(joules=total / calls, how=how, calls=calls, seconds=seconds,
                watts=total / seconds if seconds > 0 else None)


# ---------------------------------------------------------------- per-layer time
def layer_times(model: nn.Module, *inputs, repeat: int = 3, **kwargs) -> list:
    """Seconds per leaf module per forward of ``model(*inputs, **kwargs)`` (under ``torch.no_grad()``):
    a list of :class:`LayerTime` (name, type, seconds), in first-call order, median over ``repeat`` runs
    after one warm-up run. A module called several times in one forward gets the sum of its calls;
    leaf modules the forward never calls are left out. On CUDA the hooks synchronise the device, so the
    times are per-layer kernel times (and the whole forward runs slower than without hooks). Models with a
    fused forward (``fused = True``) are timed module by module, unfused."""
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a positive int, got {repeat!r}")
    cuda = any(isinstance(x, torch.Tensor) and x.is_cuda for x in inputs)
    leaves = [(n, m) for n, m in model.named_modules() if next(iter(m.children()), None) is None]
    order: dict = {}  # module name -> first-call index
    current: dict = {}  # module name -> summed seconds in this run
    starts: dict = {}

    def pre(name):
        def hook(module, args):
            _sync(cuda)
            starts[name] = time.perf_counter()
        return hook

    def post(name):
        def hook(module, args, output):
            _sync(cuda)
            dt = time.perf_counter() - starts.pop(name)
            current[name] = current.get(name, 0.0) + dt
            order.setdefault(name, len(order))
        return hook

    handles = []
    for n, m in leaves:
        handles.append(m.register_forward_pre_hook(pre(n)))
        handles.append(m.register_forward_hook(post(n)))
    runs = []
    # A fused forward (SFTNet after convert_) calls ops directly, bypassing the modules' hooks: time the
    # module-by-module forward instead, and restore the flag afterwards.
    fused = [m for m in model.modules() if getattr(m, "fused", False)]
    for m in fused:
        m.fused = False
    was_training = model.training
    model.eval()  # measuring must not move batch-norm statistics or drop activations
    try:
        with torch.no_grad():
            for i in range(repeat + 1):
                current.clear()
                model(*inputs, **kwargs)
                if i:  # run 0 is the warm-up
                    runs.append(dict(current))
    finally:
        for h in handles:
            h.remove()
        for m in fused:
            m.fused = True
        model.train(was_training)
    types = {n: type(m).__name__ for n, m in leaves}
    return [LayerTime(n, types[n], statistics.median(r.get(n, 0.0) for r in runs))
            for n in sorted(order, key=order.get)]
