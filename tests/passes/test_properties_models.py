"""Properties of the default pipeline over ONNX's own backend-test models.

The installed ``onnx`` package ships real models with recorded inputs and
outputs under ``onnx/backend/test/data``. For each one this runs the default
pass pipeline with the input shapes frozen to the recorded inputs' shapes and
checks that:

- ``onnx.checker`` accepts the result (at least as strictly as it accepts the original);
- onnxruntime's outputs of the result match the recorded outputs
  (rtol 1e-3, atol 1e-7: the onnx backend tests' own defaults). Where a pass
  changes the interface on purpose (float64 IO becomes float32, since TensorRT
  has no float64), the data goes through ``compiler.interface`` exactly as the
  compiler's own seams do: inputs cast to what the result takes, outputs cast
  back to the recorded dtype, then compared;
- a second run of the pipeline on its own output changes nothing: no record
  says ``changed=True`` and ``passes.fingerprint`` is the same;
- the manager's honesty check (a pass's ``changed`` against the fingerprint)
  raised nothing.

The original model has to earn its place first: when onnxruntime cannot load
or run it, or its outputs differ from the recorded ones, the case is skipped
with that reason, since no pass can be judged against a reference that does
not hold.

Two layouts exist. ``pytorch-converted``, ``pytorch-operator`` and ``simple``
hold one directory per model (``model.onnx``, ``test_data_set_*/input_*.pb``
and ``output_*.pb``, matched to graph inputs and outputs by position).
``light`` holds ``NAME.onnx`` and ``NAME_output_*.pb`` only: weights were
replaced by ``ConstantOfShape`` nodes and the outputs were recorded for inputs
the onnx runner generates, ``arange(n).reshape(shape) / n`` in float32 with
dynamic dimensions taken as 1; this file generates the same inputs.

onnxruntime runs every model with its graph optimizations off, so the check
sees the graph the passes wrote, not one onnxruntime rewrote on top of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import numpy_helper

from compiler import interface
from passes import PassBug, PassManager, default_pipeline, fingerprint

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
KINDS = ("light", "pytorch-converted", "pytorch-operator", "simple")
RTOL, ATOL = 1e-3, 1e-7  # onnx.backend.test.loader's defaults (no model here has a data.json overriding them)

# Measured on 2 shared cores (with the IR-version and sequence-folding fixes in place): these three
# take 10-30 s each, 56 of the file's 72 s, because folding turns their ConstantOfShape weights into
# 240-550 MB initializers that every later pass and both pipeline runs carry around. Every other
# model takes under 5 s, most under 0.1 s.
SLOW = {"light/light_bvlc_alexnet", "light/light_vgg19", "light/light_zfnet512"}


@dataclass
class Case:
    model: Path
    data_sets: list[tuple[list, list]]  # (inputs by position, expected outputs by position)


def _model_paths() -> list[tuple[str, Path]]:
    found = []
    for kind in KINDS:
        for entry in sorted((DATA / kind).iterdir()):
            if entry.is_dir() and (entry / "model.onnx").is_file():
                found.append((f"{kind}/{entry.name}", entry / "model.onnx"))
            elif kind == "light" and entry.suffix == ".onnx":
                found.append((f"{kind}/{entry.stem}", entry))
    return found


def _params():
    return [pytest.param(path, id=name, marks=[pytest.mark.slow] if name in SLOW else [])
            for name, path in _model_paths()]


def _load_value(path: Path, type_proto: onnx.TypeProto):
    """One recorded value, parsed by the kind of the graph value it belongs to (as onnx's runner does)."""
    raw = path.read_bytes()
    if type_proto.HasField("sequence_type"):
        seq = onnx.SequenceProto()
        seq.ParseFromString(raw)
        return numpy_helper.to_list(seq)
    if type_proto.HasField("optional_type"):
        opt = onnx.OptionalProto()
        opt.ParseFromString(raw)
        return numpy_helper.to_optional(opt)
    tensor = onnx.TensorProto()
    tensor.ParseFromString(raw)
    return numpy_helper.to_array(tensor)


def _light_input(vi: onnx.ValueInfoProto) -> np.ndarray:
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def _load_case(model_path: Path, model: onnx.ModelProto) -> Case:
    graph = model.graph
    if model_path.name != "model.onnx":  # light layout
        inits = {i.name for i in graph.initializer}
        inputs = [_light_input(vi) for vi in graph.input if vi.name not in inits]
        outputs = [_load_value(model_path.with_name(f"{model_path.stem}_output_{i}.pb"), graph.output[i].type)
                   for i in range(len(graph.output))]
        return Case(model_path, [(inputs, outputs)])
    sets = []
    for d in sorted(model_path.parent.glob("test_data_set_*")):
        n_in, n_out = len(list(d.glob("input_*.pb"))), len(list(d.glob("output_*.pb")))
        inputs = [_load_value(d / f"input_{i}.pb", graph.input[i].type) for i in range(n_in)]
        outputs = [_load_value(d / f"output_{i}.pb", graph.output[i].type) for i in range(n_out)]
        sets.append((inputs, outputs))
    return Case(model_path, sets)


def _input_names(model: onnx.ModelProto, case: Case) -> list[str]:
    """The graph inputs the recorded inputs feed, in order.

    By position in ``graph.input``, as onnx's runner feeds them (models of old IR versions list
    their initializers there too, after the inputs the data sets record); the light layout has
    one generated input per graph input that is not an initializer.
    """
    if case.model.name != "model.onnx":
        inits = {i.name for i in model.graph.initializer}
        return [vi.name for vi in model.graph.input if vi.name not in inits]
    return [vi.name for vi in model.graph.input][:len(case.data_sets[0][0])]


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(model: onnx.ModelProto, names: list[str], inputs: list,
         change: interface.Interface = interface.Interface()) -> list:
    """Outputs by position, with ``change`` (the result's interface change) applied to feed and outputs."""
    sess = _session(model)
    out_names = [o.name for o in sess.get_outputs()]
    outputs = change.results(dict(zip(out_names, sess.run(None, change.feed(dict(zip(names, inputs)))))))
    return [outputs[n] for n in out_names]


def _mismatch(got: list, expected: list, where: str = "") -> str | None:
    """Why ``got`` differs from ``expected`` (the onnx backend tests' comparison), or None when it matches."""
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        label = f"{where}output {i}"
        if isinstance(e, (list, tuple)):
            if not isinstance(g, (list, tuple)):
                return f"{label}: got {type(g).__name__}, expected a sequence"
            why = _mismatch(list(g), list(e), f"{label}[")
            if why:
                return why
            continue
        g, e = np.asarray(g), np.asarray(e)
        if g.shape != e.shape:
            return f"{label}: shape {g.shape}, expected {e.shape}"
        if e.dtype == object:
            if not np.array_equal(g, e):
                return f"{label}: strings differ"
            continue
        if g.dtype != e.dtype:
            return f"{label}: dtype {g.dtype}, expected {e.dtype}"
        try:
            np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL)
        except AssertionError as err:
            detail = " ".join(line.strip() for line in str(err).splitlines() if "Max" in line or "Mismatched" in line)
            return f"{label}: {detail}"
    return None


def _checks_fully(model: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
        return False
    return True


def _run_pipeline(model: onnx.ModelProto, input_shapes: dict, label: str):
    manager = PassManager(default_pipeline(input_shapes=input_shapes))
    try:
        result = manager.run(model)
    except PassBug as e:
        pytest.fail(f"{label}: honesty check failed in pass '{e.pass_name}': {e}")
    return result, manager.records


@pytest.mark.parametrize("model_path", _params())
def test_default_pipeline_properties(model_path: Path):
    model = onnx.load(str(model_path))
    case = _load_case(model_path, model)
    assert case.data_sets, f"{model_path}: no recorded data"

    names = _input_names(model, case)

    # The original must reproduce the recorded outputs, or there is nothing to judge the passes by.
    for inputs, expected in case.data_sets:
        try:
            got = _run(model, names, inputs)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
            pytest.skip(f"onnxruntime cannot run the original: {str(e).splitlines()[0][:200]}")
        why = _mismatch(got, expected)
        if why:
            pytest.skip(f"onnxruntime's outputs of the original differ from the recorded ones: {why}")

    full_check = _checks_fully(model)
    shape_sets = {tuple((n, np.shape(x)) for n, x in zip(names, ins) if isinstance(x, np.ndarray))
                  for ins, _ in case.data_sets}
    for shapes in shape_sets:  # one pipeline run per distinct set of recorded input shapes
        frozen = {n: tuple(int(d) for d in s) for n, s in shapes}
        once, _ = _run_pipeline(model, frozen, "first run")
        change = interface.diff(model, once, {})  # no layout change: only dtypes at IO

        onnx.checker.check_model(once, full_check=full_check)

        for inputs, expected in case.data_sets:
            if {(n, np.shape(x)) for n, x in zip(names, inputs) if isinstance(x, np.ndarray)} != set(shapes):
                continue
            why = _mismatch(_run(once, names, inputs, change), expected)
            assert why is None, f"optimized model's outputs differ from the recorded ones: {why}"

        # A fresh pipeline: the second run must not lean on anything the first left behind.
        twice, records = _run_pipeline(once, frozen, "second run")
        changed = [f"{r.name} (round {r.iteration}, op delta {r.op_delta})" for r in records if r.changed]
        assert not changed, f"the pipeline is not idempotent: on its own output it changed {', '.join(changed)}"
        assert fingerprint(gs.import_onnx(twice)) == fingerprint(gs.import_onnx(once)), \
            "second run reported no change but its output's fingerprint differs"
