"""The library's entry points, at their old import path (``compiler.api``): the compile is in
``compiler/pipeline.py``, each stage's own entry point in ``compiler/stages/``."""
from __future__ import annotations

from .config import DUMP_NAMES, calib_cache_path
from .pipeline import INTERMEDIATE_NAMES, Observer, compile_inputs, compile_model
from .stages.build import build_engine, load_profile_samples, model_profiles
from .stages.export import export_model
from .stages.inspect import as_saved_model, inspect_model, require_safe
from .stages.optimize import cut_model, explain_refusals, optimize_model
from .stages.precision import lower_precision
from .stages.validate import validate_artifacts
from .tools.check_trt import check_trt

__all__ = ["DUMP_NAMES", "INTERMEDIATE_NAMES", "Observer", "calib_cache_path", "compile_inputs", "as_saved_model", "build_engine", "check_trt", "compile_model", "cut_model",
           "explain_refusals", "export_model", "inspect_model", "load_profile_samples", "lower_precision",
           "model_profiles", "optimize_model", "require_safe", "validate_artifacts"]
