"""pytest-benchmark suites: `pytest benchmarks/ --benchmark-only` (add `--quick` for small shapes).

The suites are the `bench_*.py` files in benchmarks/ops/ (one per op) and benchmarks/models/; pytest's
default `python_files` (test_*.py) would skip them, so `pytest_collect_file` below collects them.

Each test times one implementation of one shape; tests of the same shape share a benchmark group, so
pytest-benchmark prints them side by side. At the end a table gives GFLOP/s, % of the measured fp32 peak
and the ratio to the best PyTorch baseline for each shape.
"""
import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(__file__))

_RESULTS = []  # (group, impl, flops)
_SUITES = {os.path.join(os.path.dirname(os.path.abspath(__file__)), d) for d in ("ops", "models")}


def pytest_collect_file(file_path, parent):
    """bench_*.py in benchmarks/ops/ and benchmarks/models/ are test modules (a file named on the command
    line is collected by pytest itself)."""
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_") and str(file_path.parent) in _SUITES
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="small shapes (SFTNet layers at a 32x32 LR input)")


@pytest.fixture
def record_flops(benchmark):
    def record(group, impl, flops):
        benchmark.group = group
        benchmark.extra_info.update(flops=flops, impl=impl)
        _RESULTS.append((benchmark, group, impl, flops))

    return record


def pytest_terminal_summary(terminalreporter):
    rows = []
    for bm, group, impl, flops in _RESULTS:
        stats = getattr(bm, "stats", None)
        if stats is None:
            continue
        rows.append((group, impl, stats.stats.median, flops))
    if not rows:
        return
    from sft_kernels.tools.benchmark import format_table, measure_peak_gflops

    peak, how = measure_peak_gflops()
    best = {}
    for g, impl, t, _ in rows:
        if impl.startswith("torch"):
            best[g] = min(best.get(g, float("inf")), t)
    body = [[g, impl, f"{t * 1e3:.3f}", f"{fl / t / 1e9:.1f}", f"{100 * fl / t / 1e9 / peak:.0f}%",
             f"{best[g] / t:.2f}x" if g in best else "-"] for g, impl, t, fl in rows]
    terminalreporter.write_line(f"\nGFLOP/s summary ({torch.get_num_threads()} threads, peak {peak:.0f} GFLOP/s "
                                f"by {how})")
    terminalreporter.write_line(format_table(body, ["shape", "impl", "median ms", "GFLOP/s", "% peak",
                                                    "vs best torch"]))
