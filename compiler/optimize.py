"""The optimize stage: run the pass pipeline over an ONNX file and write the result."""
from __future__ import annotations

from pathlib import Path

import onnx

from .artifacts import OnnxArtifact, atomic_output
from .config import OptimizeConfig
from .errors import ConfigError, OptimizeError
from .onnxutil import io_specs


def _quiet_graphsurgeon() -> None:
    import onnx_graphsurgeon as gs

    gs.logger.G_LOGGER.module_severity = gs.logger.G_LOGGER.ERROR


def optimize(onnx_path: Path, out: Path, cfg: OptimizeConfig = OptimizeConfig(), check=None):
    """Returns (OnnxArtifact, [PassRecord]). ``check(model, pass_name)`` runs after each changing pass."""
    from passes import PassBug, PassContext, PassError, PassManager, build_pipeline

    _quiet_graphsurgeon()
    try:
        pipeline = build_pipeline(cfg.passes, cfg.skip_passes)
    except PassError as e:
        raise ConfigError(str(e), "list passes with `python -m compiler optimize --list-passes`") from None
    model = onnx.load(str(onnx_path))
    manager = PassManager(pipeline, max_iterations=cfg.max_iterations, check=check, dump_dir=cfg.dump_dir)
    try:
        result = manager.run(model, PassContext(input_shapes=dict(cfg.input_shapes)))
    except PassBug as e:
        raise OptimizeError(f"bug in pass '{e.pass_name}': {e}",
                            f"work around it with --skip-pass {e.pass_name}, and please report it") from e
    except PassError as e:
        raise OptimizeError(str(e), "fix the settings it names, or skip the pass with --skip-pass NAME") from e
    try:
        onnx.checker.check_model(result)
    except onnx.checker.ValidationError as e:
        last = manager.records[-1].name if manager.records else "?"
        raise OptimizeError(f"the passes produced an invalid ONNX model (last pass: {last}): "
                            f"{str(e).splitlines()[0][:300]}",
                            "re-run with --check-each-pass to name the pass, and skip it with --skip-pass") from e
    with atomic_output(Path(out), "optimized ONNX model") as tmp:
        onnx.save(result, str(tmp))
    inputs, outputs = io_specs(result)
    return OnnxArtifact(Path(out), inputs, outputs), manager.records
