"""check-trt: TensorRT capability pre-flight of what compile would hand TensorRT (export if needed, the passes,
then the support table and, where TensorRT is installed, its own parser)."""
from __future__ import annotations

from pathlib import Path

from passes.analysis.trt_support import check_model

from ..artifacts import scratch_dir
from ..backends.tensorrt import parser_verdict
from ..config import CompileConfig
from ..common.onnxutil import load
from ..stages.export import export_model
from ..stages.inspect import as_saved_model, inspect_model
from ..stages.optimize import explain_refusals, optimize_model


def check_trt(model: Path, cfg: CompileConfig = CompileConfig(), trt_major: int = 10):
    """Returns ``(TrtCheck, parser_verdict)``; the verdict of TensorRT's own parser is None where TensorRT is not
    installed."""
    with scratch_dir("tf2trt-check-") as tmp:
        source = as_saved_model(Path(model), tmp)
        info = inspect_model(source, cfg.export)
        onnx_path = source if info.format == "onnx" else export_model(source, tmp / "model.onnx", cfg.export,
                                                                        info).path
        optimized, records = optimize_model(onnx_path, tmp / "model.opt.onnx", cfg.optimize)
        return explain_refusals(check_model(load(optimized.path), trt_major), records), \
            parser_verdict(optimized.path)
