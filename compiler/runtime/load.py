"""Load any artifact the compiler produces: its format is read from its content (``detect_format``), and the
backend that runs that format (``backends.for_format``) gives the runner; a directory that
``compiler.tftrt``'s Converter saved opens through ``compiler.deploy``, its engines through this module.

Every runner has ``inputs``/``outputs`` (TensorSpecs), ``format``, ``backend``,
``interface`` (how the artifact's IO differs from the SavedModel's, see
compiler/common/io_change.py) and ``infer(feed) -> dict``, which takes exactly what
the artifact takes (``feeds.prepare_feed`` adapts what a user has).
"""
from __future__ import annotations

from pathlib import Path

from .. import artifacts, backends, deploy
from ..config import BuildConfig
from ..profiles import ShapeProfile


def detect_format(path: Path) -> str:
    """``artifacts.detect_format``, and the directories written by compiler.tftrt's Converter.save()."""
    if deploy.is_converted(path):
        return deploy.FORMAT
    return artifacts.detect_format(path)


def load(path: Path, plugins=()):
    """A runner for the artifact at ``path``, chosen by its content.

    ``plugins`` (TensorRT plugin libraries) are loaded for a TensorRT plan; onnxruntime needs none.
    """
    fmt = detect_format(path)
    if fmt == deploy.FORMAT:  # its engines open through this function; missing ones are built by _build_converted
        return deploy.load(path, open_engine=lambda p: load(p, plugins), build=_build_converted)
    return backends.load(Path(path), fmt, tuple(plugins))


def _build_converted(graph: Path, out: Path, profiles: list[dict], manifest: dict):
    """A runner for an engine built from a converted directory's graph with ``profiles`` (ShapeProfile JSON):
    one saved without its plan, or one built at run time for shapes outside the saved profiles."""
    shaped = tuple(ShapeProfile(*({n: tuple(d[w]) for n, d in p.items()} for w in ("min", "opt", "max")))
                   for p in profiles if p)
    art = backends.build(Path(graph), Path(out), BuildConfig(workspace_mib=manifest.get("workspace_mib")),
                         profiles=shaped)
    return load(art.path)
