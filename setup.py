"""Builds the optional C++ extension `sft_kernels._C` (and `sft_kernels._C_cuda` on a CUDA build of torch).

The package works without them: `sft_kernels.backends.available()` then reports why the `cpu`/`cuda`
backends are missing. Set SFT_KERNELS_NO_EXT=1 to skip building entirely. SIMD code is chosen at run time
(AVX-512 / AVX2+FMA / portable), so one build runs on any x86-64; SFT_KERNELS_NATIVE=1 adds -march=native.
"""
import glob
import os
import shutil

from setuptools import setup

ext_modules, cmdclass = [], {}

if os.environ.get("SFT_KERNELS_NO_EXT", "0") != "1":
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    cxx = ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno"]
    if os.environ.get("SFT_KERNELS_NATIVE", "0") == "1":
        cxx.append("-march=native")
    cpu_sources = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    ext_modules.append(
        CppExtension(
            "sft_kernels._C",
            cpu_sources,
            include_dirs=[os.path.abspath("csrc")],
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"],
        )
    )
    cuda_kernels = sorted(glob.glob("csrc/cuda/*.cu"))
    if torch.version.cuda and shutil.which("nvcc") and cuda_kernels:
        arch = os.environ.get("SFT_KERNELS_CUDA_ARCH", "sm_90")
        # torch adds -gencode flags for TORCH_CUDA_ARCH_LIST (default: every arch it knows): build just ours
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{arch[3:-1]}.{arch[-1]}")
        ext_modules.append(
            CUDAExtension(
                "sft_kernels._C_cuda",
                cuda_kernels + sorted(glob.glob("csrc/cuda/*.cpp")),
                include_dirs=[os.path.abspath("csrc")],
                extra_compile_args={
                    "cxx": ["-O3", "-std=c++17"],
                    "nvcc": ["-O3", "-std=c++17", f"-arch={arch}", "--expt-relaxed-constexpr"],
                },
            )
        )
    class OptionalBuildExt(BuildExtension):
        """A failed compile warns instead of failing the install (SFT_KERNELS_STRICT_BUILD=1 makes it fail)."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as e:  # noqa: BLE001 - any compiler/ninja failure
                if os.environ.get("SFT_KERNELS_STRICT_BUILD", "0") == "1":
                    raise
                print(f"WARNING: building {ext.name} failed ({e}); sft_kernels will use its other backends")
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

    cmdclass["build_ext"] = OptionalBuildExt.with_options(use_ninja=shutil.which("ninja") is not None)

setup(ext_modules=ext_modules, cmdclass=cmdclass)
