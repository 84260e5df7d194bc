"""The int8 kernels' hot functions as compiled: no calls through the PLT and no `rep movs` / `rep stos` inside them.

Both were performance faults that no test saw for a session (docs/PERF_NOTES.md, "int8 store: what the compiler did
with it"): GCC made the pair store an out-of-line call per pixel pair once it grew, and turned a two-iteration
copy loop into `rep movsq` per tile. This reads the built extension's disassembly; it skips where there is no
extension or no objdump."""
import re
import shutil
import subprocess

import pytest

from sft_kernels.runtime import registry

# Demangled name prefixes of the functions each tile, block or pixel pair runs through.
HOT = (
    "void sft::qconv::(anonymous namespace)::tile_vnni_mr<",
    "void sft::(anonymous namespace)::tile_sums_vnni<",
    "sft::(anonymous namespace)::output_block_avx512(",
    "sft::(anonymous namespace)::input_block_avx512(",
    "sft::(anonymous namespace)::pair_unit(",
    "sft::(anonymous namespace)::sums(",
)


def _hot_functions() -> dict:
    ext = registry.cpu_ext()
    if ext is None:
        pytest.skip("cpu extension not built")
    if shutil.which("objdump") is None:
        pytest.skip("objdump not installed")
    asm = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", ext.__file__], capture_output=True,
                         text=True, check=True).stdout
    funcs, name = {}, None
    for line in asm.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            name = m.group(1) if m.group(1).startswith(HOT) else None
            if name:
                funcs[name] = []
        elif name and line.strip():
            funcs[name].append(line)
    return funcs


def test_int8_hot_functions_have_no_plt_calls_or_rep_strings():
    funcs = _hot_functions()
    found = {prefix for prefix in HOT if any(f.startswith(prefix) for f in funcs)}
    assert found == set(HOT), f"not found in the extension (renamed?): {set(HOT) - found}"
    bad = {}
    for name, lines in funcs.items():
        hits = [ln.strip() for ln in lines if "@plt>" in ln or re.search(r"\brep(z|nz)? (movs|stos)", ln)]
        if hits:
            bad[name[:100]] = hits[:3]
    assert not bad, f"calls through the PLT or rep strings inside hot int8 functions: {bad}"
