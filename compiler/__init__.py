"""tf2trt-compiler: TensorFlow SavedModel → ONNX → TensorRT-ready passes → engine, validated.

The Python API is importable without TensorFlow or TensorRT installed; heavy libraries load only when a stage
needs them. The API names below load on first use (PEP 562), so ``python -m compiler --help`` imports no ONNX.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {name: "compiler.api" for name in ("build_engine", "compile_model", "export_model", "inspect_model",
                                          "lower_precision", "optimize_model", "validate_artifacts")}
_API |= {name: "compiler.config" for name in ("BuildConfig", "CompileConfig", "ExportConfig", "OptimizeConfig",
                                              "PrecisionConfig", "ValidateConfig", "parse_shapes")}
_API["CompilerError"] = "compiler.errors"

__all__ = sorted([*_API, "__version__"])


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'compiler' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)
