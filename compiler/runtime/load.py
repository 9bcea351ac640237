"""Load any artifact the compiler produces: its format is read from its content (``artifacts.detect_format``),
and the backend that runs that format (``backends.for_format``) gives the runner.

Every runner has ``inputs``/``outputs`` (TensorSpecs), ``format``, ``backend``,
``interface`` (how the artifact's IO differs from the SavedModel's, see
compiler/common/io_change.py) and ``infer(feed) -> dict``, which takes exactly what
the artifact takes (``feeds.prepare_feed`` adapts what a user has).
"""
from __future__ import annotations

from pathlib import Path

from .. import backends
from ..artifacts import detect_format


def load(path: Path, plugins=()):
    """A runner for the artifact at ``path``, chosen by its content.

    ``plugins`` (TensorRT plugin libraries) are loaded for a TensorRT plan; onnxruntime needs none.
    """
    return backends.load(Path(path), detect_format(path), tuple(plugins))
