"""Builds the optional extensions `sft_kernels._C_cuda` (on a CUDA build of torch, with nvcc) and `sft_kernels._C`.

The package works without them: `sft_kernels.backends.available()` then reports why the `cpu`/`cuda`
backends are missing. SIMD code is chosen at run time (AVX-512 / AVX2+FMA / portable), so one build runs on any
x86-64; SFT_KERNELS_NATIVE=1 adds -march=native.

Knobs (environment):
  SFT_KERNELS_EXT=all|cuda|cpu|none   which extensions to build (default all; SFT_KERNELS_NO_EXT=1 means none).
                                      `cuda` alone is for a GPU machine with little time: the CPU extension is
                                      ~23 units that compile one by one without ninja (3-5 minutes).
  SFT_KERNELS_CUDA_ARCH=sm_90         the one architecture the CUDA extension is built for.
  SFT_KERNELS_STRICT_BUILD=1          a failed compile or toolchain check fails the install instead of warning.
The CUDA extension is built first, so a time limit cuts the CPU one, not it. nvcc is looked up through torch's
CUDA_HOME (then PATH). A failed build prints a banner and the package falls back to its other backends.
"""
import glob
import os
import shutil

from setuptools import setup

ext_modules, cmdclass = [], {}
STRICT = os.environ.get("SFT_KERNELS_STRICT_BUILD", "0") == "1"
WHICH = "none" if os.environ.get("SFT_KERNELS_NO_EXT", "0") == "1" else os.environ.get("SFT_KERNELS_EXT", "all")
if WHICH not in ("all", "cuda", "cpu", "none"):
    raise SystemExit(f"SFT_KERNELS_EXT must be one of all, cuda, cpu, none; got {WHICH!r}")


def banner(text):
    line = "!" * 100
    print(f"\n{line}\n!! {text}\n{line}\n", flush=True)


def find_cuda_home():
    """The CUDA toolkit to build with: the first of $CUDA_HOME, torch's CUDA_HOME, /usr/local/cuda and the one
    above nvcc on PATH that has both bin/nvcc and the runtime headers (an nvcc on PATH may be a wrapper script
    in /usr/local/bin, from which torch would guess /usr/local); None if none has."""
    from torch.utils.cpp_extension import CUDA_HOME

    nvcc = shutil.which("nvcc")
    homes = [os.environ.get("CUDA_HOME"), CUDA_HOME, "/usr/local/cuda"]
    if nvcc:
        homes.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for home in homes:
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")) and \
                os.path.exists(os.path.join(home, "include", "cuda_runtime_api.h")):
            return home
    return None


def cxx_std():
    """-std=c++20 where this torch's headers demand it (ATen.h says so; newer torch releases), else c++17."""
    from torch.utils.cpp_extension import include_paths

    for d in include_paths():
        aten = os.path.join(d, "ATen", "ATen.h")
        if os.path.exists(aten):
            with open(aten) as f:
                return "c++20" if "C++20 or later" in f.read(2000) else "c++17"
    return "c++17"


if WHICH != "none":
    import torch
    from torch.utils import cpp_extension
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    STD = cxx_std()

    cuda_kernels = sorted(glob.glob("csrc/cuda/**/*.cu", recursive=True))
    if WHICH == "cuda" and not torch.version.cuda:
        banner(f"sft_kernels._C_cuda NOT BUILT: torch {torch.__version__} is a CPU-only build; install a CUDA build")
    if WHICH in ("all", "cuda") and torch.version.cuda and cuda_kernels:
        cuda_home = find_cuda_home()
        if cuda_home is None:
            banner("sft_kernels._C_cuda NOT BUILT: torch is a CUDA build but no CUDA toolkit (bin/nvcc and "
                   f"include/cuda_runtime_api.h) was found in $CUDA_HOME, torch's CUDA_HOME "
                   f"({cpp_extension.CUDA_HOME}), /usr/local/cuda or above nvcc on PATH; set CUDA_HOME")
        else:
            os.environ["CUDA_HOME"] = cuda_home
            cpp_extension.CUDA_HOME = cuda_home  # read by torch's build when it adds include and library paths
            arch = os.environ.get("SFT_KERNELS_CUDA_ARCH", "sm_90")
            # torch adds -gencode flags for TORCH_CUDA_ARCH_LIST (default: every arch it knows): build just ours
            os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{arch[3:-1]}.{arch[-1]}")
            print(f"sft_kernels: building _C_cuda for {arch} with {cuda_home}/bin/nvcc, -std={STD}", flush=True)
            ext_modules.append(
                CUDAExtension(
                    "sft_kernels._C_cuda",
                    cuda_kernels + sorted(glob.glob("csrc/cuda/**/*.cpp", recursive=True)),
                    include_dirs=[os.path.abspath("csrc")],
                    extra_compile_args={
                        "cxx": ["-O3", f"-std={STD}"],
                        "nvcc": ["-O3", f"-std={STD}", f"-arch={arch}", "--expt-relaxed-constexpr"],
                    },
                )
            )
    if WHICH in ("all", "cpu"):
        cxx = ["-O3", f"-std={STD}", "-fopenmp", "-fno-math-errno"]
        if os.environ.get("SFT_KERNELS_NATIVE", "0") == "1":
            cxx.append("-march=native")
        ext_modules.append(
            CppExtension(
                "sft_kernels._C",
                ["csrc/register.cpp"] + sorted(glob.glob("csrc/cpu/**/*.cpp", recursive=True)),
                include_dirs=[os.path.abspath("csrc")],
                extra_compile_args={"cxx": cxx},
                extra_link_args=["-fopenmp"],
            )
        )

    # torch's own toolchain checks (CUDA major version, host compiler range) raise inside build_extensions and
    # would abort every extension, the CPU one included: report them and let nvcc decide.
    _check_cuda_version = cpp_extension._check_cuda_version

    def _lenient_check_cuda_version(*args, **kwargs):
        try:
            return _check_cuda_version(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - RuntimeError, FileNotFoundError, ValueError in torch's versions
            if STRICT:
                raise
            banner(f"torch's CUDA toolchain check failed ({type(e).__name__}: {e}); building anyway")

    cpp_extension._check_cuda_version = _lenient_check_cuda_version

    class OptionalBuildExt(BuildExtension):
        """A failed compile warns instead of failing the install (SFT_KERNELS_STRICT_BUILD=1 makes it fail)."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as e:  # noqa: BLE001 - any compiler/ninja failure
                if STRICT:
                    raise
                banner(f"WARNING: building {ext.name} failed ({type(e).__name__}: {str(e)[:300]}); "
                       "sft_kernels will use its other backends")
                self._failed = getattr(self, "_failed", set()) | {ext.name}

        def _built_only(self):  # a failed extension has no file to copy or list as an output
            failed = getattr(self, "_failed", set())
            self.extensions = [e for e in self.extensions if e.name not in failed]
            for name in failed:  # nor may an old in-place build of it be loaded as if it were current
                stale = self.get_ext_filename(name)
                if os.path.exists(stale):
                    os.remove(stale)
                    print(f"WARNING: removed the stale {stale}")

        def copy_extensions_to_source(self):
            self._built_only()
            super().copy_extensions_to_source()

        def get_outputs(self):
            self._built_only()
            return super().get_outputs()

        def get_output_mapping(self):
            self._built_only()
            return super().get_output_mapping()

    use_ninja = shutil.which("ninja") is not None
    print(f"sft_kernels: extensions {[e.name for e in ext_modules]}, ninja {'found' if use_ninja else 'absent'}",
          flush=True)
    cmdclass["build_ext"] = OptionalBuildExt.with_options(use_ninja=use_ninja)

setup(ext_modules=ext_modules, cmdclass=cmdclass)
