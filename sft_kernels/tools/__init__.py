"""The command line (`sft-kernels`: cli.py) and what it runs: demo, upscale, report, the benchmark suite (benchmark.py
timing, bench_suite.py tables, shapes.py the shape catalog) and the cpu GEMM blocking sweep (cpu_tune.py)."""
