"""tf2trt-compiler: TensorFlow SavedModel → ONNX → TensorRT-ready passes → engine, validated.

The Python API (see ``api``) is importable without TensorFlow or TensorRT
installed; heavy libraries load only when a stage needs them.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api import (build_engine, compile_model, export_model, inspect_model, lower_precision,  # noqa: E402
                  optimize_model, validate_artifacts)
from .config import (BuildConfig, CompileConfig, ExportConfig, OptimizeConfig, PrecisionConfig,  # noqa: E402
                     ValidateConfig, parse_shapes)
from .errors import CompilerError  # noqa: E402

__all__ = ["BuildConfig", "CompileConfig", "CompilerError", "ExportConfig", "OptimizeConfig", "PrecisionConfig",
           "ValidateConfig", "__version__", "build_engine", "compile_model", "export_model", "inspect_model",
           "lower_precision", "optimize_model", "parse_shapes", "validate_artifacts"]
