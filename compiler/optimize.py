"""The optimize stage: run the pass pipeline over an ONNX file and write the result."""
from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs

from passes import FreezeInputShapes, InferShapes, PassBug, PassError, PassManager, build_pipeline, contract
from passes.rules import RuleFileError, load_rules_file
from passes.user_rules import UserRuleError

from .common import io_change as interface
from .artifacts import OnnxArtifact, atomic_output
from .config import OptimizeConfig
from .errors import ConfigError, OptimizeError
from .common.onnxutil import io_specs, load, needs_external_data, op_histogram, write


def _quiet_graphsurgeon() -> None:
    gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.ERROR  # its warnings say what the pass stats say
    gs.logger.G_LOGGER.colors = False


def _user_rules(path):
    if path is None:
        return []

    try:
        return load_rules_file(Path(path))
    except RuleFileError as e:
        raise ConfigError(str(e), "see the README's 'Writing your own rules' for the rule API") from None


def optimize(onnx_path: Path, out: Path, cfg: OptimizeConfig = OptimizeConfig(), check=None):
    """Returns (OnnxArtifact, [PassRecord]). ``check(model, pass_name)`` runs after each changing pass."""
    _quiet_graphsurgeon()
    try:
        pipeline = _pipeline(cfg)
    except PassError as e:
        raise ConfigError(str(e), "list passes with `python -m compiler optimize --list-passes`") from None
    model = load(Path(onnx_path))

    def with_interface(candidate):  # the layout pass says what it transposed; dtypes are read off the graphs
        perms = next((r.stats["perms"] for r in manager.records if r.name == "layout_io" and r.changed), {})
        interface.write(candidate, interface.diff(model, candidate, perms))
        return candidate

    checked = None if check is None else (lambda candidate, name: check(with_interface(candidate), name))
    manager = PassManager(pipeline, max_iterations=cfg.max_iterations, check=checked, dump_dir=cfg.dump_dir)
    try:
        result = with_interface(manager.run(model))
    except UserRuleError as e:
        raise OptimizeError(str(e), "fix that rule in the --rules file (or leave it out of RULES)") from e
    except PassBug as e:
        raise OptimizeError(f"bug in pass '{e.pass_name}': {e}",
                            f"work around it with --skip-pass {e.pass_name}, and please report it") from e
    except PassError as e:
        raise OptimizeError(str(e), "fix the settings it names, or skip the pass with --skip-pass NAME") from e
    with atomic_output(Path(out), "optimized ONNX model") as tmp:
        big = needs_external_data(result)
        if big:  # a model over 2 GB is checked where it lies, with its external data (passes/contract.py)
            write(result, tmp)
        problem = contract.violation(tmp if big else result)
        if problem:
            _name_breaking_pass(model, tmp if big else result, problem, cfg)
        if not big:
            onnx.save(result, str(tmp))
    inputs, outputs = io_specs(result)
    return OnnxArtifact(Path(out), inputs, outputs, op_histogram(result), interface.read(result)), \
        manager.records


def _pick(tensors: dict, names, flag: str) -> list:
    """The tensors a --cut-* flag names, each computed by the model and of a known dtype; else why not."""
    missing = [n for n in names if n not in tensors or isinstance(tensors[n], gs.Constant)]
    if missing:
        near = difflib.get_close_matches(missing[0], [n for n, t in tensors.items()
                                                      if not isinstance(t, gs.Constant)], n=3)
        hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise ConfigError(f"{flag} names tensor(s) {', '.join(repr(m) for m in missing)} that the model "
                          f"does not compute{hint}",
                          "list tensor names with `python -m compiler inspect MODEL.onnx --tensors`")
    for name in names:
        if tensors[name].dtype is None:
            raise OptimizeError(f"{flag} tensor '{name}' has no known dtype after shape inference",
                                "cut at a different tensor, or give --input-shapes so inference can finish")
    return [tensors[n] for n in names]


def _pipeline(cfg: OptimizeConfig) -> list:
    """The passes ``cfg`` selects, each configured by its constructor (a fresh list: passes hold state)."""
    return build_pipeline(cfg.passes, cfg.skip_passes, input_shapes=dict(cfg.input_shapes),
                          inputs_as_nchw=cfg.inputs_as_nchw, outputs_as_nchw=cfg.outputs_as_nchw,
                          rules=tuple(_user_rules(cfg.rules_file)))


def _name_breaking_pass(model, result, problem: str, cfg: OptimizeConfig):
    """The pipeline's output (``result``: a proto, or the file it was written to) breaks its contract
    (passes/contract.py): run it again checking after every pass, and raise an OptimizeError naming the first pass
    whose output breaks it. An input that breaks the contract itself (custom-domain ops onnxruntime lacks) only
    has to stay valid ONNX."""
    if contract.violation(model) is not None:
        try:
            onnx.checker.check_model(str(result) if isinstance(result, Path) else result)
            return
        except onnx.checker.ValidationError as e:
            raise OptimizeError(f"the passes produced an invalid ONNX model: {str(e).splitlines()[0][:300]}",
                                "re-run with --check-each-pass to name the pass, and skip it with --skip-pass") from e
    try:
        PassManager(_pipeline(cfg), max_iterations=cfg.max_iterations,
                    check=contract.check_after_each_pass).run(model)
    except contract.ContractBroken as e:
        raise OptimizeError(f"pass '{e.pass_name}' broke the graph: {e.problem}",
                            f"skip it with --skip-pass {e.pass_name}, and please report it") from e
    raise OptimizeError(f"the optimized graph is not valid ONNX ({problem}), and no single pass's output shows it",
                        "re-run with --check-each-pass, or --dump-passes DIR to inspect each pass's output")


def cut(onnx_path: Path, out: Path, cfg: OptimizeConfig) -> tuple[OnnxArtifact, OptimizeConfig]:
    """``--cut-inputs/--cut-outputs``: extract the subgraph between those tensors (pre/post-processing cut off).

    The original inputs are frozen to ``--input-shapes`` and shapes are inferred
    first, so the cut tensors get static shapes and dtypes where the model
    allows. Returns the cut model and the settings for the passes that follow
    (``--input-shapes`` entries for inputs that were cut away are dropped).
    """
    _quiet_graphsurgeon()
    model = load(Path(onnx_path))
    graph = gs.import_onnx(model)
    try:
        FreezeInputShapes(cfg.input_shapes).run(graph)
    except PassError as e:
        raise ConfigError(str(e), "give --input-shapes for the model's own inputs") from None
    InferShapes().run(graph)
    tensors = graph.tensors()

    new_inputs = _pick(tensors, cfg.cut_inputs, "--cut-inputs") if cfg.cut_inputs else None
    new_outputs = _pick(tensors, cfg.cut_outputs, "--cut-outputs") if cfg.cut_outputs else list(graph.outputs)
    if new_inputs is not None:
        for t in new_inputs:
            t.inputs.clear()  # its producer is cut off
        # Original inputs the cut region still reads stay inputs; cleanup drops the others.
        graph.inputs = new_inputs + [t for t in graph.inputs if t not in new_inputs]
    graph.outputs = new_outputs
    graph.cleanup(remove_unused_graph_inputs=True).toposort()
    available = {t.name for t in graph.inputs}
    needed = sorted({t.name for n in graph.nodes for t in n.inputs
                     if t.name and not isinstance(t, gs.Constant) and not t.inputs and t.name not in available})
    if needed:
        raise ConfigError(f"the cut subgraph still needs tensor(s) {', '.join(repr(n) for n in needed[:5])} "
                          "from outside it", "add them to --cut-inputs")
    result = gs.export_onnx(graph, do_type_check=False)
    result.ir_version = model.ir_version
    with atomic_output(Path(out), "cut ONNX model") as tmp:
        write(result, tmp)
        try:  # on the file: a model over 2 GB is checked with its external data
            onnx.checker.check_model(str(tmp))
        except onnx.checker.ValidationError as e:
            raise OptimizeError(f"the cut produced an invalid ONNX model: {str(e).splitlines()[0][:300]}",
                                "cut at different tensors") from e
    inputs, outputs = io_specs(result)
    kept = {k: v for k, v in cfg.input_shapes.items() if k in available}
    return OnnxArtifact(Path(out), inputs, outputs, op_histogram(result)), \
        replace(cfg, input_shapes=kept, cut_inputs=(), cut_outputs=())
