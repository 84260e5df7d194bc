"""The package's import graph, read from the source with `ast` (function-level imports included, since they only
hide a cycle), has no cycle; and `import sft_kernels` reaches every public subpackage as an attribute."""
import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "sft_kernels"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict:
    """{module: {sft_kernels modules it imports anywhere in its source}}."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                root = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
                src = ".".join(p for p in (root, node.module or "") if p)
                # `from pkg import name`: name may be a submodule (an edge to it) or an attribute (edge to pkg)
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in files else src for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # `import a.b.c` executes a, a.b, a.b.c: the deepest known one
                    t = t.rpartition(".")[0]
                if t.startswith("sft_kernels") and t != mod:
                    deps.add(t)
        graph[mod] = deps
    return graph


def cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _parents_are_not_edges(graph: dict) -> dict:
    """A subpackage importing its own parent package's __init__ (which imports it back) is a real cycle; a module
    importing a sibling through `from . import x` is an edge to x only. Nothing to drop: kept for clarity."""
    return graph


def test_no_import_cycles():
    found = cycles(_parents_are_not_edges(import_graph()))
    assert not found, "import cycles (each line one strongly connected set):\n" + "\n".join(map(str, found))


def test_graph_sees_function_level_imports():
    g = import_graph()
    assert "sft_kernels.runtime.registry" in g["sft_kernels.runtime.autotune"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_public_subpackages_are_attributes():
    code = ("import sft_kernels as sk; sk.models.SFTNet; sk.ops.conv2d; sk.nn.Conv2d; sk.metrics.psnr; "
            "sk.transforms.convert_; sk.runtime.dispatch; sk.data.load_image; sk.reference.conv2d")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
