"""The optimize stage: run the pass pipeline over an ONNX file and write the result."""
from __future__ import annotations

from pathlib import Path

import onnx

from passes import contract

from . import interface
from .artifacts import OnnxArtifact, atomic_output
from .config import OptimizeConfig
from .errors import ConfigError, OptimizeError
from .onnxutil import io_specs, load


def _quiet_graphsurgeon() -> None:
    import onnx_graphsurgeon as gs

    gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.ERROR  # its warnings say what the pass stats say
    gs.logger.G_LOGGER.colors = False


def _user_rules(path):
    if path is None:
        return []
    from passes.rules import RuleFileError, load_rules_file

    try:
        return load_rules_file(Path(path))
    except RuleFileError as e:
        raise ConfigError(str(e), "see the README's 'Writing your own rules' for the rule API") from None


def optimize(onnx_path: Path, out: Path, cfg: OptimizeConfig = OptimizeConfig(), check=None):
    """Returns (OnnxArtifact, [PassRecord]). ``check(model, pass_name)`` runs after each changing pass."""
    from passes import PassBug, PassContext, PassError, PassManager, build_pipeline
    from passes.user_rules import UserRuleError

    _quiet_graphsurgeon()
    try:
        pipeline = build_pipeline(cfg.passes, cfg.skip_passes)
    except PassError as e:
        raise ConfigError(str(e), "list passes with `python -m compiler optimize --list-passes`") from None
    model = load(Path(onnx_path))

    def context():
        return PassContext(input_shapes=dict(cfg.input_shapes), rules=tuple(_user_rules(cfg.rules_file)),
                           inputs_as_nchw=cfg.inputs_as_nchw, outputs_as_nchw=cfg.outputs_as_nchw)

    ctx = context()

    def with_interface(candidate):
        interface.write(candidate, interface.diff(model, candidate, ctx.state.get("interface_perms", {})))
        return candidate

    checked = None if check is None else (lambda candidate, name: check(with_interface(candidate), name))
    manager = PassManager(pipeline, max_iterations=cfg.max_iterations, check=checked, dump_dir=cfg.dump_dir)
    try:
        result = with_interface(manager.run(model, ctx))
    except UserRuleError as e:
        raise OptimizeError(str(e), "fix that rule in the --rules file (or leave it out of RULES)") from e
    except PassBug as e:
        raise OptimizeError(f"bug in pass '{e.pass_name}': {e}",
                            f"work around it with --skip-pass {e.pass_name}, and please report it") from e
    except PassError as e:
        raise OptimizeError(str(e), "fix the settings it names, or skip the pass with --skip-pass NAME") from e
    problem = contract.violation(result)
    if problem:
        _name_breaking_pass(model, result, problem, lambda: build_pipeline(cfg.passes, cfg.skip_passes),
                            context, cfg)
    with atomic_output(Path(out), "optimized ONNX model") as tmp:
        onnx.save(result, str(tmp))
    inputs, outputs = io_specs(result)
    return OnnxArtifact(Path(out), inputs, outputs), manager.records


def _name_breaking_pass(model, result, problem: str, pipeline, context, cfg: OptimizeConfig):
    """The pipeline's output breaks its contract (passes/contract.py): run it again checking after every pass,
    and raise an OptimizeError naming the first pass whose output breaks it. An input that breaks the contract
    itself (custom-domain ops onnxruntime lacks) only has to stay valid ONNX."""
    from passes import PassManager

    if contract.violation(model) is not None:
        try:
            onnx.checker.check_model(result)
            return
        except onnx.checker.ValidationError as e:
            raise OptimizeError(f"the passes produced an invalid ONNX model: {str(e).splitlines()[0][:300]}",
                                "re-run with --check-each-pass to name the pass, and skip it with --skip-pass") from e
    try:
        PassManager(pipeline(), max_iterations=cfg.max_iterations, check=contract.check_after_each_pass).run(
            model, context())
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
    import difflib

    import onnx_graphsurgeon as gs

    from passes import FreezeInputShapes, InferShapes, PassContext, PassError

    _quiet_graphsurgeon()
    model = load(Path(onnx_path))
    graph = gs.import_onnx(model)
    ctx = PassContext(input_shapes=dict(cfg.input_shapes))
    try:
        FreezeInputShapes().run(graph, ctx)
    except PassError as e:
        raise ConfigError(str(e), "give --input-shapes for the model's own inputs") from None
    InferShapes().run(graph, ctx)
    tensors = graph.tensors()

    def pick(names, flag):
        missing = [n for n in names if n not in tensors or isinstance(tensors[n], gs.Constant)]
        if missing:
            near = difflib.get_close_matches(missing[0], [n for n, t in tensors.items()
                                                          if not isinstance(t, gs.Constant)], n=3)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise ConfigError(f"{flag} names tensor(s) {', '.join(repr(m) for m in missing)} that the model "
                              f"does not compute{hint}",
                              "list tensor names with `python -m compiler inspect MODEL.onnx --tensors`")
        return [tensors[n] for n in names]

    new_inputs = pick(cfg.cut_inputs, "--cut-inputs") if cfg.cut_inputs else None
    new_outputs = pick(cfg.cut_outputs, "--cut-outputs") if cfg.cut_outputs else list(graph.outputs)
    for t in new_outputs:
        if t.dtype is None:
            raise OptimizeError(f"--cut-outputs tensor '{t.name}' has no known dtype after shape inference",
                                "cut at a different tensor, or give --input-shapes so inference can finish")
    if new_inputs is not None:
        for t in new_inputs:
            if t.dtype is None:
                raise OptimizeError(f"--cut-inputs tensor '{t.name}' has no known dtype after shape inference",
                                    "cut at a different tensor, or give --input-shapes so inference can finish")
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
    try:
        onnx.checker.check_model(result)
    except onnx.checker.ValidationError as e:
        raise OptimizeError(f"the cut produced an invalid ONNX model: {str(e).splitlines()[0][:300]}",
                            "cut at different tensors") from e
    with atomic_output(Path(out), "cut ONNX model") as tmp:
        onnx.save(result, str(tmp))
    inputs, outputs = io_specs(result)
    kept = {k: v for k, v in cfg.input_shapes.items() if k in available}
    from dataclasses import replace

    return OnnxArtifact(Path(out), inputs, outputs), replace(cfg, input_shapes=kept, cut_inputs=(), cut_outputs=())
