"""Stage 2 backends: each turns an optimized ONNX model into an engine file.

``tensorrt`` builds a TensorRT plan through Polygraphy's loaders (needs
TensorRT and an NVIDIA GPU); ``onnxruntime`` writes a pre-optimized ORT-format
model that runs anywhere. ``auto`` picks TensorRT only when it can build.
"""
from __future__ import annotations

from pathlib import Path

from . import onnxruntime, tensorrt
from ..artifacts import EngineArtifact
from ..config import BuildConfig
from ..errors import BuildError


def resolve_backend(requested: str) -> tuple[str, str | None]:
    """(backend, notice): the backend to use and, for ``auto``, why it was chosen."""
    if requested != "auto":
        return requested, None
    ok, why = tensorrt.availability()
    if ok:
        return "tensorrt", None
    return "onnxruntime", (f"TensorRT backend unavailable ({why}); built an onnxruntime CPU artifact instead. "
                           "This is NOT a TensorRT engine.")


def build(onnx_path: Path, out: Path, cfg: BuildConfig = BuildConfig(), profiles: tuple = ()) -> EngineArtifact:
    """Build ``out`` from ``onnx_path``. ``profiles`` (checked ShapeProfiles, see compiler/profiles.py) are
    TensorRT's optimization profiles; onnxruntime runs any shape and needs none."""
    backend, _ = resolve_backend(cfg.backend)
    if backend == "tensorrt":
        return tensorrt.build(onnx_path, out, cfg, profiles=profiles)
    if backend == "onnxruntime":
        return onnxruntime.build(onnx_path, out, cfg)
    raise BuildError(f"unknown backend '{backend}'", "use --backend auto, tensorrt or onnxruntime")
