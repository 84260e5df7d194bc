"""The report every model transform returns: one row per layer it touched or left alone, and why."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerRow:
    name: str  # qualified module name ("" for the model itself)
    action: str  # what the transform did: "converted", "skipped", "fused", "quantized", "pruned", ...
    detail: str = ""  # why it was skipped, or what changed
    stats: dict = field(default_factory=dict)  # numbers per layer (MACs before/after, sparsity, rank, ...)


@dataclass
class Report:
    """Rows in model order; `str(report)` is a readable summary."""

    transform: str
    rows: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # whole-model numbers (PSNR before / after, ...)

    def add(self, name: str, action: str, detail: str = "", **stats) -> None:
        self.rows.append(LayerRow(name, action, detail, stats))

    def names(self, action: str) -> list:
        return [r.name for r in self.rows if r.action == action]

    def __str__(self):
        counts: dict = {}
        for r in self.rows:
            counts[r.action] = counts.get(r.action, 0) + 1
        lines = [f"{self.transform}: " + ", ".join(f"{n} {a}" for a, n in counts.items())]
        lines += [f"  {r.action} {r.name or '<model>'}" + (f": {r.detail}" if r.detail else "")
                  for r in self.rows if r.action != "converted"]
        return "\n".join(lines)
