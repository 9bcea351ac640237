"""onnx-graphsurgeon 0.6.1's shape-tensor cast elision, and our workaround (passes/gs_cast_elision.py)."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import TensorProto, helper, numpy_helper

from passes import FoldConstants
from tests.conftest import ort_run


def _shared_constant_model() -> onnx.ModelProto:
    """bucket = int(float(ids) * 0.5) and scaled = x * 0.5, the two sharing one constant (T5's pattern)."""
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    nodes = [helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["ids_f", "half"], ["prod"]),
             helper.make_node("Cast", ["prod"], ["bucket"], to=TensorProto.INT64),
             helper.make_node("Mul", ["x", "half"], ["scaled"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3]),
                                           helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("bucket", TensorProto.INT64, [2, 3]),
                               helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [2, 3])],
                              initializer=[half])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_graphsurgeon_still_rewrites_a_shared_constant_in_place():
    """The upstream bug itself. When this fails, onnx-graphsurgeon fixed it: delete passes/gs_cast_elision.py
    and its call in passes/fold_constants.py."""
    graph = gs.import_onnx(_shared_constant_model())
    graph.fold_constants(fold_shapes=True)
    half = graph.tensors()["half"]
    assert np.asarray(half.values).dtype.kind == "i", "graphsurgeon no longer casts the shared constant in place"


def test_fold_constants_keeps_shared_and_fractional_constants_float():
    model = _shared_constant_model()
    graph = gs.import_onnx(model)
    FoldConstants().run(graph)
    out = gs.export_onnx(graph)
    out.ir_version = 8
    onnx.checker.check_model(out, full_check=True)
    ids = np.array([[0, 1, 2], [3, 4, 5]], np.int64)
    x = np.ones((2, 3), np.float32)
    got, want = ort_run(out, {"ids": ids, "x": x}), ort_run(model, {"ids": ids, "x": x})
    np.testing.assert_array_equal(got["bucket"], want["bucket"])
    np.testing.assert_array_equal(got["scaled"], want["scaled"])
    assert not [n for n in out.graph.node if n.name.startswith("tf2trt_cast_elision_guard")]


def test_exact_private_elisions_still_happen():
    """An integer-valued constant used only there: graphsurgeon's elision is exact and is kept."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "two"], ["p"]),
             helper.make_node("Cast", ["p"], ["y"], to=TensorProto.INT64)]
    graph = gs.import_onnx(helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [3])], initializer=[two]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    FoldConstants().run(graph)
    assert [n.op for n in graph.nodes] == ["Mul"]


def test_optimize_names_the_pass_that_breaks_the_contract(tmp_path, monkeypatch):
    """A pass whose output onnxruntime refuses is named (exit 5), even though each graph is valid ONNX."""
    import pytest

    from compiler.errors import OptimizeError
    from compiler.optimize import optimize
    from passes import gs_cast_elision

    path = tmp_path / "m.onnx"
    onnx.save(_shared_constant_model(), str(path))
    monkeypatch.setattr(gs_cast_elision, "guard", lambda graph: [])  # graphsurgeon's bug, unguarded
    with pytest.raises(OptimizeError) as e:
        optimize(path, tmp_path / "o.onnx")
    assert e.value.exit_code == 5 and "pass 'fold_constants' broke the graph" in e.value.one_line()
    assert not (tmp_path / "o.onnx").exists()


def test_check_trt_never_calls_a_graph_that_does_not_load_supported(tmp_path, capsys):
    """A float Mul reading an int constant: every op is in TensorRT's table, but the graph cannot be built."""
    import json

    from passes.trt_support import check_model
    from tests.conftest import run_cli

    model = _shared_constant_model()
    half = model.graph.initializer[0]
    half.CopyFrom(numpy_helper.from_array(np.array(0, np.int64), "half"))
    verdict = check_model(model)
    assert not verdict.supported and not verdict.findings and "not buildable" in verdict.summary()
    assert verdict.to_json()["loads"]["ok"] is False
    path = tmp_path / "broken.onnx"
    onnx.save(model, str(path))
    code, stdout, stderr = run_cli(capsys, "check-trt", path, "--json")
    # inspect's own input checks refuse it first (exit 3); either way no verdict says supported
    assert code != 0 and (not stdout.strip() or json.loads(stdout)["supported"] is False), stdout + stderr


def test_a_comparison_between_casts_keeps_its_bool_output():
    """Cast(int→float) → Less → Cast(→int32): graphsurgeon would make the Less output the int32 tensor."""
    window = numpy_helper.from_array(np.array(4.0, np.float32), "window")
    nodes = [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Less", ["f", "window"], ["near"]),
             helper.make_node("Cast", ["near"], ["y"], to=TensorProto.INT32)]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT32, [5])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [5])], initializer=[window]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    graph = gs.import_onnx(model)
    FoldConstants().run(graph)
    out = gs.export_onnx(graph)
    out.ir_version = 8
    onnx.checker.check_model(out, full_check=True)
    ids = np.arange(5, dtype=np.int32) + 2
    np.testing.assert_array_equal(ort_run(out, {"ids": ids})["y"], ort_run(model, {"ids": ids})["y"])
