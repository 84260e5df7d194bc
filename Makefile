# make demo : create .venv, install torch 2.13.0 (CPU) + the package, build the C++ extension, run the demo
# make test : same setup if needed, then the test suite (the command CI runs)
PY        ?= python3
VENV      ?= .venv
PIP        = $(VENV)/bin/pip
PYTHON     = $(VENV)/bin/python
STAMP      = $(VENV)/.sft_installed

.PHONY: demo test bench bench-full bench-runtimes info clean setup asan gpu-vendor data

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)

# Torch first (the pinned CPU wheel), then the build tools and runtime/test deps, then the package with
# its extension built against the installed torch (no build isolation).
$(STAMP): $(VENV)/bin/python pyproject.toml setup.py $(shell find csrc -name "*.cpp" -o -name "*.h" -o -name "*.cu")
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q triton==3.9.0 numpy pillow tqdm safetensors setuptools wheel ninja \
		pytest pytest-benchmark hypothesis scikit-image scikit-learn matplotlib expecttest onnx onnxruntime
	$(PIP) install -q --no-build-isolation --no-deps -e .
	@$(PYTHON) -c "import sft_kernels.backends as b; print('backends available:', b.available())"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sft-kernels demo

test: $(STAMP)
	$(PYTHON) -m pytest -q -m "not gpu"

info: $(STAMP)
	$(VENV)/bin/sft-kernels info

# Training photographs from the OS's wallpaper packages (apt-get install: needs root), into data/photos
data: $(STAMP)
	$(VENV)/bin/sft-kernels data --install --out data/photos

bench: $(STAMP)
	$(VENV)/bin/sft-kernels bench --quick

bench-full: $(STAMP)
	$(PYTHON) -m pytest benchmarks/ --benchmark-only

# SFTNet end to end against onnxruntime and OpenVINO, fp32 and int8 (installs OpenVINO first: ~60 MB)
bench-runtimes: $(STAMP)
	$(PIP) install -q openvino
	$(PYTHON) benchmarks/models/bench_runtimes.py --threads 1 2 --plot runtimes.png

# AddressSanitizer build of the C++ kernels, run with every micro-kernel (slow to build; not in `make test`)
ASAN_LIB = $(shell gcc -print-file-name=libasan.so)
asan: $(STAMP)
	LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0 $(PYTHON) tests/asan/asan_check.py build
	for isa in avx512 avx2 generic; do \
		SFT_KERNELS_ISA=$$isa LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0 $(PYTHON) tests/asan/asan_check.py || exit 1; \
	done
	@if $(PYTHON) -c "from sft_kernels.ops.qconv2d import cpu; exit(cpu.kernel() != 'amx')"; then \
		SFT_KERNELS_INT8=vnni LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0 $(PYTHON) tests/asan/asan_check.py; fi
	@if $(PYTHON) -c "from sft_kernels.ops.qconv2d import cpu; exit(cpu.kernel() not in ('amx', 'vnni', 'avxvnni'))"; then \
		SFT_KERNELS_INT8=avxvnni LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0 $(PYTHON) tests/asan/asan_check.py; fi
	SFT_KERNELS_INT8=avx2 LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0 $(PYTHON) tests/asan/asan_check.py
	@if $(PYTHON) -c "from sft_kernels.backends import bf16_unit; exit(bf16_unit() != 'amx')"; then \
		SFT_KERNELS_BF16=vectors LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0 $(PYTHON) tests/asan/asan_check.py; fi

clean:
	rm -rf build *.egg-info sft_kernels/*.so demo_out .pytest_cache .benchmarks

# pytest and ninja for Python 3.12 in .gpu_vendor, to carry to a lent GPU machine that lacks them (no network
# there); benchmarks/gpu_check.sh uses them only where the machine has none of its own
gpu-vendor:
	$(PY) -m pip install -q --target .gpu_vendor --python-version 3.12 --only-binary=:all: \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 pytest ninja
