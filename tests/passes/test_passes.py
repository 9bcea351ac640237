"""Each pass three ways: structure, numerics vs onnxruntime, onnx.checker; then properties over real models."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper

from passes import (CleanupToposort, FoldConstants, FreezeInputShapes, InferShapes, PassError,
                    PassManager, PassResult, build_pipeline, default_pipeline, fingerprint)
from passes.infra import Pass
from tests.conftest import COMPILABLE, golden, ort_run


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _const(name, arr):
    return onnx.numpy_helper.from_array(np.asarray(arr), name)


def _foldable_model():
    """y = x + (a * b) + reshape-by-shape arithmetic: (a*b) folds; Shape(x) folds once x is static."""
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.full((2, 3), 0.5, np.float32)
    nodes = [
        helper.make_node("Mul", ["a", "b"], ["ab"], name="mul_consts"),
        helper.make_node("Add", ["x", "ab"], ["s"], name="add"),
        helper.make_node("Shape", ["x"], ["shp"], name="shape"),
        helper.make_node("Reshape", ["s", "shp"], ["y"], name="reshape"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    return _model(nodes, [x], [y], [_const("a", a), _const("b", b)])


def _run_pass(p: Pass, model: onnx.ModelProto):
    graph = gs.import_onnx(model)
    result = p.run(graph)
    return graph, result, gs.export_onnx(graph)


FEED = {"x": np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)}


def test_freeze_input_shapes_structure_numerics_checker():
    graph, result, out = _run_pass(FreezeInputShapes({"x": (2, 3)}), _foldable_model())
    assert result.changed and result.stats["frozen"] == ["x"]
    assert [d.dim_value for d in out.graph.input[0].type.tensor_type.shape.dim] == [2, 3]
    onnx.checker.check_model(out, full_check=True)
    np.testing.assert_array_equal(ort_run(out, FEED)["y"], ort_run(_foldable_model(), FEED)["y"])
    assert not FreezeInputShapes({"x": (2, 3)}).run(graph).changed  # honest on its own output


@pytest.mark.parametrize("shape, match", [((2, 3, 1), "rank"), ((2, 4), "axis 1"), (None, "not an input")])
def test_freeze_input_shapes_refuses_with_reason(shape, match):
    shapes = {"x": shape} if shape else {"nope": (1, 3)}
    with pytest.raises(PassError, match=match):
        _run_pass(FreezeInputShapes(shapes), _foldable_model())


def test_infer_shapes_annotates_without_losing_static_dims():
    model = _foldable_model()
    graph, result, out = _run_pass(InferShapes(), model)
    assert result.changed
    assert graph.tensors()["s"].shape == ["N", 3] or graph.tensors()["s"].shape[1] == 3
    onnx.checker.check_model(out, full_check=True)
    np.testing.assert_array_equal(ort_run(out, FEED)["y"], ort_run(model, FEED)["y"])
    assert not InferShapes().run(graph).changed


def test_fold_constants_folds_weights_and_static_shapes():
    model = _foldable_model()
    graph = gs.import_onnx(model)
    FreezeInputShapes({"x": (2, 3)}).run(graph)
    InferShapes().run(graph)
    result = FoldConstants().run(graph)
    out = gs.export_onnx(graph)
    ops = [n.op_type for n in out.graph.node]
    assert result.changed and "Mul" not in ops and "Shape" not in ops, ops
    assert result.stats["folded_nodes"] == 2
    onnx.checker.check_model(out, full_check=True)
    np.testing.assert_allclose(ort_run(out, FEED)["y"], ort_run(model, FEED)["y"], rtol=0, atol=0)
    assert not FoldConstants().run(graph).changed


def test_cleanup_toposort_removes_dead_nodes_and_sorts():
    nodes = [  # deliberately out of order, with a dead branch
        helper.make_node("Relu", ["h"], ["y"], name="second"),
        helper.make_node("Neg", ["x"], ["dead"], name="dead"),
        helper.make_node("Abs", ["x"], ["h"], name="first"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph, result, out = _run_pass(CleanupToposort(), _model(nodes, [x], [y]))
    assert result.changed and [n.name for n in out.graph.node] == ["first", "second"]
    onnx.checker.check_model(out, full_check=True)
    np.testing.assert_array_equal(ort_run(out, FEED)["y"], np.abs(FEED["x"]))
    assert not CleanupToposort().run(graph).changed


def test_cleanup_keeps_unused_graph_inputs():
    nodes = [helper.make_node("Abs", ["x"], ["y"])]
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("x", "unused")]
    graph, _, out = _run_pass(CleanupToposort(), _model(nodes, ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]))
    assert [i.name for i in out.graph.input] == ["x", "unused"]


class _Liar(Pass):
    name = "liar"

    def run(self, graph):
        graph.nodes[0].name = "renamed"
        return PassResult(changed=False)


def test_manager_catches_a_pass_that_lies_about_changed():
    with pytest.raises(PassError, match="liar.*changed=False"):
        PassManager([_Liar()]).run(_foldable_model())


def test_manager_records_dumps_and_checks(tmp_path):
    seen = []
    manager = PassManager(default_pipeline(input_shapes={"x": (2, 3)}), check=lambda m, name: seen.append(name),
                          dump_dir=tmp_path)
    out = manager.run(_foldable_model())
    onnx.checker.check_model(out, full_check=True)
    changed = [r.name for r in manager.records if r.changed]
    assert seen == changed and "fold_constants" in changed
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "000_input.onnx"
    assert len(list(tmp_path.iterdir())) == 1 + len(changed)
    assert manager.records[-1].iteration >= 2  # it ran until a round changed nothing
    assert not any(r.changed for r in manager.records if r.iteration == manager.records[-1].iteration)
    fold = next(r for r in manager.records if r.name == "fold_constants")
    assert fold.op_delta == {"Mul": -1, "Shape": -1}


def test_pipeline_selection_and_unknown_names():
    names = [p.name for p in default_pipeline()]
    assert [p.name for p in build_pipeline(skip=("fold_constants",))] == [n for n in names if n != "fold_constants"]
    assert [p.name for p in build_pipeline(("cleanup_toposort",))] == ["cleanup_toposort"]
    with pytest.raises(PassError, match="unknown pass"):
        build_pipeline(("nope",))


@pytest.mark.tf
@pytest.mark.parametrize("name", sorted(COMPILABLE))
def test_pipeline_properties_on_fixtures(exported, name):
    """Semantics preserved (vs the TF goldens), a second run changes nothing, `changed` verified by fingerprint."""
    ins, outs = golden(name)
    shapes = {k: v.shape for k, v in ins.items()}
    model = onnx.load(str(exported[name]))
    manager = PassManager(default_pipeline(input_shapes=shapes))
    once = manager.run(model)
    onnx.checker.check_model(once, full_check=True)
    takes = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in once.graph.input}
    got = ort_run(once, {k: v.astype(takes[k]) for k, v in ins.items()})  # float64 IO becomes float32
    for k, v in outs.items():
        np.testing.assert_allclose(got[k], v, atol=1e-5, rtol=1e-4)
    again = PassManager(default_pipeline(input_shapes=shapes))
    twice = again.run(once)
    assert not any(r.changed for r in again.records)
    assert fingerprint(gs.import_onnx(twice)) == fingerprint(gs.import_onnx(once))


def _if_model_with_dead_node_in_branch():
    """y = If(c, then: Abs(x) [plus a dead Neg], else: Relu(x)): only a subgraph has something to clean."""
    out_t = helper.make_tensor_value_info("y_then", TensorProto.FLOAT, [2, 3])
    out_e = helper.make_tensor_value_info("y_else", TensorProto.FLOAT, [2, 3])
    then_g = helper.make_graph([helper.make_node("Neg", ["x"], ["dead"], name="dead"),
                                helper.make_node("Abs", ["x"], ["y_then"], name="abs")], "then", [], [out_t])
    else_g = helper.make_graph([helper.make_node("Relu", ["x"], ["y_else"], name="relu")], "else", [], [out_e])
    node = helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g)
    return _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])


def test_cleanup_reports_changes_inside_subgraphs():
    """Regression: Keras GRU/SimpleRNN export Loop bodies; a change only there must count as a change."""
    model = _if_model_with_dead_node_in_branch()
    graph, result, out = _run_pass(CleanupToposort(), model)
    then_nodes = [n.name for n in out.graph.node[0].attribute[0].g.node] + \
        [n.name for n in out.graph.node[0].attribute[1].g.node]
    assert result.changed and "dead" not in then_nodes
    onnx.checker.check_model(out, full_check=True)
    feed = dict(FEED, c=np.array(True))
    np.testing.assert_array_equal(ort_run(out, feed)["y"], np.abs(FEED["x"]))
    assert not CleanupToposort().run(graph).changed
    PassManager(default_pipeline()).run(model)  # the honesty check passes on it


class _BreaksSemantics(Pass):
    """Turns Abs into Neg: valid ONNX, wrong numbers."""

    name = "breaks_semantics"

    def run(self, graph):
        for n in graph.nodes:
            if n.op == "Abs":
                n.op = "Neg"
                return PassResult(changed=True)
        return PassResult(changed=False)


class _RenamesNode(Pass):
    """A real but harmless change: the numbers stay the same."""

    name = "renames_node"

    def run(self, graph):
        if graph.nodes[0].name == "renamed":
            return PassResult(changed=False)
        graph.nodes[0].name = "renamed"
        return PassResult(changed=True)


def test_check_each_pass_names_the_pass_that_changed_the_numbers(tmp_path):
    from compiler.artifacts import TensorSpec
    from compiler.config import ValidateConfig
    from compiler.errors import OptimizeError
    from compiler.validate import PassNumericsCheck

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    model = _model([helper.make_node("Abs", ["x"], ["y"], name="abs")], [x], [y])
    path = tmp_path / "abs.onnx"
    onnx.save(model, str(path))
    check = PassNumericsCheck(path, (TensorSpec("x", "float32", (2, 3)),), {"x": (2, 3)}, ValidateConfig(),
                              (1e-5, 1e-5))
    checked = []
    PassManager([_RenamesNode()], check=lambda m, name: (checked.append(name), check(m, name))).run(
        model)
    assert checked == ["renames_node"]  # the check ran on a faithful change, and passed
    with pytest.raises(OptimizeError, match="pass 'breaks_semantics' changed the model's outputs.*'y' max abs") as e:
        PassManager([_BreaksSemantics()], check=check).run(model)
    assert "--skip-pass breaks_semantics" in e.value.one_line()
