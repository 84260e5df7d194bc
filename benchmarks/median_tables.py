"""README tables from repeated `sft-kernels bench` runs: each cell is the median ratio over the runs, and the
spread (min-max) of every ratio is listed after the tables, so cells near a target can be read with their noise.

Runs are the JSON files in benchmarks/results/*/ named cpu_bench_<tag>_<T>t[_malloc-tuned][_runN].json (the
file without _runN is run 1), for T = 1 and 2 threads, under default malloc and with the GLIBC_TUNABLES
malloc setting.
Run: python benchmarks/median_tables.py --tag 2026-11-29_xeon-spr-2c
"""
import argparse
import glob
import json
import re
import statistics as st
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load_runs(tag: str, threads: int, tuned: bool) -> list:
    base = f"cpu_bench_{tag}_{threads}t" + ("_malloc-tuned" if tuned else "")
    paths = [p for p in glob.glob(str(RESULTS / "*" / f"{base}*.json"))
             if re.fullmatch(rf"{base}(_run\d+)?\.json", Path(p).name)]
    if not paths:
        raise SystemExit(f"no runs {base}*.json in {RESULTS}/*/")
    return [{(r["shape"], r["impl"]): r for r in json.loads(Path(p).read_text())["rows"]} for p in sorted(paths)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", required=True, help="<date>_<machine> part of the result file names")
    args = p.parse_args(argv)
    data = {(t, tu): load_runs(args.tag, t, tu) for t in (1, 2) for tu in (False, True)}

    def med(t, tu, key, field="vs_torch"):
        return st.median(run[key][field] for run in data[(t, tu)])

    def ratio(t, tu, key):
        return f"{med(t, tu, key):.2f}×"

    first = data[(1, False)][0]
    shapes = list(dict.fromkeys(s for s, _ in first))
    counts = ", ".join(f"{t}t{' malloc' if tu else ''}: {len(v)}" for (t, tu), v in data.items())
    print(f"runs per setting: {counts}\n")
    print("| shape | torch best GFLOP/s (1t) | sft cpu auto, channels_last: GFLOP/s (% peak), ratio 1t | ratio 2t | "
          "malloc setting: ratio 1t / 2t | direct path only: ratio 1t / 2t (malloc setting) | NCHW input, ratio 1t |")
    print("|---|---|---|---|---|---|---|")
    for s in shapes:
        k = (s, "sft cpu cl")
        if k not in first:
            continue
        best = st.median(max(run[(s, "torch nchw")]["gflops"], run[(s, "torch cl")]["gflops"])
                         for run in data[(1, False)])
        d = (s, "sft cpu cl direct")
        direct = (f"{ratio(1, False, d)} / {ratio(2, False, d)} ({ratio(1, True, d)} / {ratio(2, True, d)})"
                  if d in first else "(= auto)")
        print(f"| {s} | {best:.0f} | {med(1, False, k, 'gflops'):.0f} ({med(1, False, k, 'pct_peak'):.0f} %), "
              f"{ratio(1, False, k)} | {ratio(2, False, k)} | {ratio(1, True, k)} / {ratio(2, True, k)} | {direct} | "
              f"{ratio(1, False, (s, 'sft cpu nchw'))} |")
    print("\n| M×N×K | torch.matmul GFLOP/s (1t) | sft cpu GFLOP/s (% peak), ratio 1t | ratio 2t |")
    print("|---|---|---|---|")
    for (s, impl), r in first.items():
        if r["op"] == "matmul" and impl == "sft cpu":
            k = (s, impl)
            print(f"| {s} | {med(1, False, (s, 'torch'), 'gflops'):.0f} | {med(1, False, k, 'gflops'):.0f} "
                  f"({med(1, False, k, 'pct_peak'):.0f} %), {ratio(1, False, k)} | {ratio(2, False, k)} |")
    print("\nspread of each ratio over the runs (min-max; m = malloc setting):")
    for (s, impl), r in first.items():
        if impl.startswith("sft"):
            cells = []
            for (t, tu), runs in data.items():
                v = [run[(s, impl)]["vs_torch"] for run in runs]
                cells.append(f"{t}t{'m' if tu else ''} {min(v):.2f}-{max(v):.2f}")
            print(f"  {s}, {impl}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
