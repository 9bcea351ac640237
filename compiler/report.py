"""The compile report: per-stage status and timing, graph histograms, passes, validation, versions.

One object, filled as the pipeline runs, serialised to JSON for machines and
rendered as tables for people by the CLI.
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .artifacts import write_text_atomic

STAGES = ("inspect", "export", "optimize", "precision", "build", "validate")

_PACKAGES = ("tf2trt-compiler", "tensorflow", "tf2onnx", "onnx", "onnx-graphsurgeon", "onnxruntime", "polygraphy",
             "numpy", "openvino", "tensorrt")


def versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    """Python's and each installed package's version; None for a package that is not installed."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in packages:
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            found[pkg] = None
    return found


@dataclass
class StageRecord:
    status: str = "skipped"  # ok | failed | skipped
    seconds: float = 0.0
    note: str | None = None
    peak_rss_mb: float | None = None  # the process's peak resident MiB while the stage ran (common/memory.py)

    def to_json(self) -> dict:
        peak = None if self.peak_rss_mb is None else round(self.peak_rss_mb, 1)
        return {"status": self.status, "seconds": round(self.seconds, 4), "note": self.note, "peak_rss_mb": peak}


@dataclass
class Report:
    model: str
    out: str | None = None
    backend: str | None = None
    backend_notice: str | None = None
    precision: dict = field(default_factory=lambda: {"mode": "fp32"})  # the precision stage's record
    stages: dict[str, StageRecord] = field(default_factory=lambda: {s: StageRecord() for s in STAGES})
    graph: dict[str, dict] = field(default_factory=dict)  # exported / optimized: {nodes, ops}
    passes: list[dict] = field(default_factory=list)
    validation: list = field(default_factory=list)  # SeamResult
    error: dict | None = None
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    engine: dict | None = None
    intermediates: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    safety: dict | None = None
    trt_check: dict | None = None
    interface: dict = field(default_factory=dict)  # how the engine's IO differs from the model's (common/io_change.py)
    localization: dict | None = None  # a failed onnx→optimized seam: the first divergent node (tools/localize.py)

    @property
    def status(self) -> str:
        ok = self.error is None and all(s.passed for s in self.validation)
        return "ok" if ok else "failed"

    def set_graph(self, key: str, ops: dict[str, int]) -> None:
        self.graph[key] = {"nodes": sum(ops.values()),
                           "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))}

    def to_json(self) -> dict:
        return {
            "status": self.status, "error": self.error, "model": self.model, "out": self.out,
            "backend": self.backend, "backend_notice": self.backend_notice, "precision": self.precision,
            "stages": {k: v.to_json() for k, v in self.stages.items()},
            "inputs": self.inputs, "outputs": self.outputs,
            "graph": self.graph, "passes": self.passes,
            "validation": [s.to_json() for s in self.validation],
            "safety": self.safety, "trt_check": self.trt_check, "interface": self.interface, "engine": self.engine,
            "localization": self.localization,
            "intermediates": self.intermediates, "notices": self.notices,
            "versions": versions(),
        }

    def write(self, path: Path) -> None:
        write_text_atomic(Path(path), json.dumps(self.to_json(), indent=2) + "\n", "report")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def summary_table(report: Report) -> str:
    nodes = {"export": report.graph.get("exported", {}).get("nodes"),
             "optimize": report.graph.get("optimized", {}).get("nodes"),
             "precision": report.graph.get(report.precision["mode"], {}).get("nodes")}
    rows = []
    for name, rec in report.stages.items():
        node_text = ""
        if name == "export" and nodes["export"] is not None:
            node_text = str(nodes["export"])
        if name == "optimize" and nodes["optimize"] is not None:
            node_text = f"{nodes['export']} → {nodes['optimize']}" if nodes["export"] is not None \
                else str(nodes["optimize"])
        if name == "precision" and nodes["precision"] is not None:
            node_text = f"{nodes['optimize']} → {nodes['precision']}"
        peak = "" if rec.peak_rss_mb is None else f"{rec.peak_rss_mb:.0f}"
        rows.append([name, rec.status, f"{rec.seconds:.2f}", peak, node_text])
    text = _table(["stage", "status", "seconds", "peak RSS MiB", "nodes"], rows)
    if report.validation:
        vrows = []
        for seam in report.validation:
            for o in seam.outputs.values():
                top1 = f"{o.top1:.1%} of {o.top1_rows}" if o.top1 is not None and o.top1_rows > 1 else ""
                vrows.append([seam.seam, o.name, f"{o.max_abs:.2e}", f"{o.max_rel:.2e}",
                              f"{o.atol:.3g}/{o.rtol:g}", top1, "ok" if o.passed else "FAIL"])
        text += "\n\n" + _table(["seam", "output", "max abs", "max rel", "atol/rtol", "top-1", "result"], vrows)
    return text
