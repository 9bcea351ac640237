"""einsum_to_matmul, nms_count_cumsum, loop_if_fold: structure, numerics vs onnxruntime, onnx.checker, idempotence.

Each rule runs alone (``apply_rules``) on small hand-built models; a second
application must change nothing. The last tests export real TF functions with
tf2onnx and run the default pipeline (marked ``tf``).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto as TP
from onnx import helper

from passes import fingerprint
from passes.rules import apply_rules
from passes.rules.control_flow import LoopIfFold
from passes.rules.einsum import EinsumToMatMul, parse_equation
from passes.rules.nms import NmsCountCumSum
from passes.trt_support import check_model
from tests.conftest import ort_run

F, I64, BOOL = TP.FLOAT, TP.INT64, TP.BOOL


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def _init(name, value):
    return onnx.numpy_helper.from_array(np.asarray(value), name)


def _apply(rule, model):
    """(exported model, stats) after one application; asserts a second application changes nothing."""
    graph = gs.import_onnx(model)
    stats = apply_rules(graph, [rule])
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    again = gs.import_onnx(out)
    before = fingerprint(again)
    second = apply_rules(again, [rule])
    assert not second["applied"] and fingerprint(again) == before, "a second application changed the graph"
    return out, stats


def _ops(model) -> list[str]:
    return sorted(n.op_type for n in model.graph.node)


def _feed(model, seed=0, shapes=None):
    rng = np.random.default_rng(seed)
    feed = {}
    for vi in model.graph.input:
        shape = (shapes or {}).get(vi.name) or [d.dim_value for d in vi.type.tensor_type.shape.dim]
        feed[vi.name] = rng.normal(size=shape).astype(np.float32)
    return feed


def _refusals(stats) -> list[str]:
    return [r["reason"] for r in stats["refused"]]


# --- einsum_to_matmul ---------------------------------------------------------------------------------------------

def _einsum(equation, *shapes, opset=17):
    names = [f"x{k}" for k in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], name="einsum", equation=equation)
    try:  # the output's rank (numpy's einsum on stand-in sizes); its dimensions where every input is static
        out = list(np.einsum(equation, *[np.zeros([d if isinstance(d, int) else 2 for d in s]) for s in shapes]).shape)
        if any(not isinstance(d, int) for s in shapes for d in s):
            out = [None] * len(out)
    except (ValueError, TypeError):  # equations the rule refuses; their models are not checked
        out = None
    return _model([node], [_vi(n, F, s) for n, s in zip(names, shapes)], [_vi("y", F, out)], opset=opset)


@pytest.mark.parametrize("equation, shapes, ops", [
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)], ["MatMul", "Transpose"]),  # attention scores
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)], ["MatMul"]),  # what tf2onnx leaves as Einsum
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (1, 5, 4, 6)], ["MatMul"]),  # MatMul broadcasts batch dims
    ("ij,jk", [(3, 4), (4, 5)], ["MatMul"]),  # implicit output 'ik'
    ("ba,bc", [(3, 4), (3, 5)], ["MatMul", "Transpose"]),  # implicit output 'ac'
    ("Ab,bC->AC", [(3, 4), (4, 5)], ["MatMul"]),
    ("abc,cd->abd", [(2, 3, 4), (4, 5)], ["MatMul", "Reshape", "Reshape"]),  # merged free dims
    ("bi,bj->bij", [(2, 3), (2, 4)], ["MatMul", "Reshape", "Reshape"]),  # outer product, no contraction
    ("ij,ij->", [(3, 4), (3, 4)], ["MatMul", "Reshape", "Reshape", "Reshape"]),  # full contraction
    ("bij,bjk->bk", [(2, 3, 4), (2, 4, 5)], ["MatMul", "ReduceSum", "Reshape", "Reshape"]),  # i summed in x0 only
    ("bij,bjkl->blik", [(2, 3, 4), (2, 4, 5, 6)], ["MatMul", "Reshape", "Reshape", "Transpose", "Transpose"]),
    ("bij->bji", [(2, 3, 4)], ["Transpose"]),
    ("bij->b", [(2, 3, 4)], ["ReduceSum"]),
    ("bij->ib", [(2, 3, 4)], ["ReduceSum", "Transpose"]),
    ("ij->ij", [(3, 4)], ["Identity"]),
])
def test_einsum_rewrite_structure_numerics_checker(equation, shapes, ops):
    model = _einsum(equation, *shapes)
    out, stats = _apply(EinsumToMatMul(), model)
    assert stats["applied"] == {"einsum_to_matmul": ["einsum"]} and not stats["refused"]
    assert _ops(out) == sorted(ops)
    onnx.checker.check_model(out, full_check=True)
    for seed in (0, 1):
        feed = _feed(model, seed)
        want, got = ort_run(model, feed)["y"], ort_run(out, feed)["y"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_einsum_reduce_sum_before_opset_13_uses_the_axes_attribute():
    model = _einsum("bij->b", (2, 3, 4), opset=12)
    out, _ = _apply(EinsumToMatMul(), model)
    (node,) = out.graph.node
    assert node.op_type == "ReduceSum" and [a.name for a in node.attribute] == ["axes", "keepdims"]
    onnx.checker.check_model(out, full_check=True)
    feed = _feed(model)
    np.testing.assert_allclose(ort_run(out, feed)["y"], ort_run(model, feed)["y"], rtol=1e-5, atol=1e-5)


def test_einsum_dynamic_batch_keeps_working_through_reshapes():
    """Reshapes copy the batch dimension with 0, so one rewritten model serves every batch size."""
    model = _einsum("bij,bjkl->bikl", ("N", 3, 4), ("N", 4, 5, 6))
    out, _ = _apply(EinsumToMatMul(), model)
    reshape_targets = [onnx.numpy_helper.to_array(t).tolist() for t in out.graph.initializer]
    assert reshape_targets == [[0, 0, 30], [0, 0, 5, 6]]
    onnx.checker.check_model(out, full_check=True)
    for batch in (1, 3):
        feed = _feed(model, batch, {"x0": (batch, 3, 4), "x1": (batch, 4, 5, 6)})
        np.testing.assert_allclose(ort_run(out, feed)["y"], ort_run(model, feed)["y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("equation, shapes, ops", [
    # ellipses of different ranks: onnxruntime's Einsum says 'incompatible dimensions'; α is free, β broadcasts
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 6)], ["MatMul", "Reshape", "Reshape", "Transpose", "Transpose"]),
    # a sum then a transpose: onnxruntime 1.23's Einsum fails ('Destination size does not match source')
    ("bij->jb", [(2, 3, 4)], ["ReduceSum", "Transpose"]),
])
def test_einsum_where_onnxruntime_cannot_run_the_original_matches_numpy(equation, shapes, ops):
    model = _einsum(equation, *shapes)
    out, _ = _apply(EinsumToMatMul(), model)
    assert _ops(out) == sorted(ops)
    onnx.checker.check_model(out, full_check=True)
    feed = _feed(model)
    want = np.einsum(equation, *[feed[f"x{k}"] for k in range(len(shapes))])
    np.testing.assert_allclose(ort_run(out, feed)["y"], want, rtol=1e-5, atol=1e-5)


def test_einsum_parse_expands_ellipsis_right_aligned_and_implicit_output():
    assert parse_equation("...ij,...jk", [4, 3]) == (["αβij", "βjk"], "αβik")
    assert parse_equation("ba,ab->ba", [2, 2]) == (["ba", "ab"], "ba")
    assert parse_equation("Ab,bC", [2, 2]) == (["Ab", "bC"], "AC")


@pytest.mark.parametrize("equation, shapes, reason", [
    ("ii->i", [(4, 4)], "index 'i' repeats within operand 0 (a diagonal or trace)"),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], "3 operands: only one- and two-operand equations"),
    ("abc,cd->abd", [("a", "b", 3), (3, 4)], "dimension groups ['a', 'b'] have unknown sizes"),
    ("...ij,jk->...ik", [None, (3, 4)], "has an ellipsis but its rank is unknown"),
    ("ij,jk->iz", [(2, 3), (3, 4)], "output index 'z' appears in no operand"),
    ("bij,bjk->bik", [(2, 3, 4), (3, 4, 5)], "index 'b' has sizes [2, 3] in different operands"),
    ("ij,jk->ik", [(2, 1), (3, 4)], "index 'j' broadcasts (sizes [1, 3]) but is not a batch index"),
])
def test_einsum_refusals_say_why(equation, shapes, reason):
    model = _einsum(equation, *shapes)
    out, stats = _apply(EinsumToMatMul(), model)
    assert not stats["applied"] and len(stats["refused"]) == 1
    assert reason in stats["refused"][0]["reason"]
    assert _ops(out) == ["Einsum"]


# --- nms_count_cumsum ---------------------------------------------------------------------------------------------

def _nms_count(batch=2, classes=3, boxes=20, per_class=4, table="eyelike", axis=0, m_input=False):
    """tf2onnx's CombinedNonMaxSuppression ranking: exclusive CumSum over one-hot rows of each selection's batch."""
    b_dim, c_dim, n_dim = batch, classes, boxes
    nodes = [
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_per_class", "iou", "score_min"], ["sel"],
                         name="nms"),
        helper.make_node("Slice", ["sel", "zero", "one", "one"], ["sel_b2"], name="batch_col"),
        helper.make_node("Squeeze", ["sel_b2", "one"], ["sel_b"], name="squeeze"),
        helper.make_node("Gather", ["table", "sel_b"], ["onehot"], name="gather", axis=0),
        helper.make_node("CumSum", ["onehot", "axis"], ["count"], name="cumsum", exclusive=1),
        helper.make_node("Unsqueeze", ["sel_b", "one"], ["sel_b_col"], name="unsqueeze"),
        helper.make_node("GatherND", ["count", "sel_b_col"], ["rank"], name="rank", batch_dims=1),
    ]
    inits = [_init("iou", np.float32(0.5)), _init("score_min", np.float32(0.1)), _init("zero", np.array([0])),
             _init("one", np.array([1])), _init("axis", np.array(axis))]
    if not m_input:
        inits.append(_init("max_per_class", np.array([per_class])))
    if isinstance(table, str):  # "eyelike", the dynamic-batch form: EyeLike(ConstantOfShape([B, B]))
        nodes = [helper.make_node("Shape", ["scores"], ["s_shape"], name="shape", end=1),
                 helper.make_node("Concat", ["s_shape", "s_shape"], ["bb"], name="concat", axis=0),
                 helper.make_node("ConstantOfShape", ["bb"], ["zeros"], name="zeros",
                                  value=helper.make_tensor("v", I64, [1], [0])),
                 helper.make_node("EyeLike", ["zeros"], ["table"], name="eye")] + nodes
    else:
        inits.append(_init("table", table))
    inputs = [_vi("boxes", F, [b_dim, n_dim, 4]), _vi("scores", F, [b_dim, c_dim, n_dim])]
    if m_input:
        inputs.append(_vi("max_per_class", I64, [1]))
    model = _model(nodes, inputs, [_vi("count", I64, ["n", b_dim]), _vi("rank", I64, ["n"])], inits)
    return onnx.shape_inference.infer_shapes(model)  # dtypes on every tensor, as the pipeline's infer_shapes gives


def _nms_feed(batch, classes, boxes, seed):
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 1, (batch, boxes, 2)).astype(np.float32)
    size = rng.uniform(0.05, 0.4, (batch, boxes, 2)).astype(np.float32)
    return {"boxes": np.concatenate([corner, corner + size], -1),
            "scores": rng.uniform(0, 1, (batch, classes, boxes)).astype(np.float32)}


@pytest.mark.parametrize("batch_dim, table", [(2, np.eye(2, dtype=np.int64)), ("B", "eyelike")])
def test_nms_count_cumsum_structure_numerics_checker(batch_dim, table):
    model = _nms_count(batch=batch_dim, table=table)
    assert any("CumSum" in f.text() and "INT64" in f.reason for f in check_model(model).findings)
    out, stats = _apply(NmsCountCumSum(), model)
    assert stats["applied"] == {"nms_count_cumsum": ["cumsum"]} and not stats["refused"]
    (cumsum,) = [n for n in out.graph.node if n.op_type == "CumSum"]
    producer = {o: n for n in out.graph.node for o in n.output}
    assert producer[cumsum.input[0]].op_type == "Cast" and producer[cumsum.input[0]].attribute[0].i == F
    assert not [f for f in check_model(out).findings if f.op == "CumSum"]
    onnx.checker.check_model(out, full_check=True)
    for batch, seed in [(2, 0), (2, 1)] if batch_dim == 2 else [(1, 0), (2, 1), (4, 2)]:
        feed = _nms_feed(batch, 3, 20, seed)
        want, got = ort_run(model, feed), ort_run(out, feed)
        assert want["rank"].size > batch and want["rank"].max() > 0  # the counts are exercised
        for name in ("count", "rank"):
            assert got[name].dtype == np.int64
            np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("kwargs, reason", [
    (dict(classes="C", table="eyelike"), "have a dynamic class dimension"),
    (dict(m_input=True), "max_output_boxes_per_class is computed at run time"),
    (dict(classes=4096, boxes=8192, per_class=4096), "can reach 16777216 ≥ 2^24"),
    (dict(axis=1, table=np.eye(2, dtype=np.int64)), "runs along axis 1"),
    (dict(table=np.ones((2, 2), np.int64)), "is not 0/1 with at most one 1 per column"),
])
def test_nms_count_cumsum_refusals_say_why(kwargs, reason):
    model = _nms_count(**{"table": "eyelike", **kwargs})
    out, stats = _apply(NmsCountCumSum(), model)
    assert not stats["applied"] and reason in " ".join(_refusals(stats))
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in model.graph.node]


def test_nms_count_cumsum_leaves_other_integer_cumsums_alone():
    """Not an NMS count: not wanted, so no refusal is recorded (cumsum_integer_scan's business)."""
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], name="cumsum")
    model = _model([node], [_vi("x", I64, [5, 3])], [_vi("y", I64, [5, 3])], [_init("axis", np.array(0))])
    _, stats = _apply(NmsCountCumSum(), model)
    assert stats == {"applied": {}, "refused": []}


# --- loop_if_fold: If ----------------------------------------------------------------------------------------------

def _branch(name, nodes, out, inits=()):
    return helper.make_graph(nodes, name, [], [_vi(out, F, [2, 3])], initializer=list(inits))


def _if_model(cond_as_node=True, cond=True, nested=False, twice=False):
    """y = If(cond) then x * k + 1 (k a branch initializer) else -x; z = y + x after it.

    ``twice``: a second If on the same condition computes z = If(...)(y) with its
    own branch initializer also named 'k' (sibling scopes may reuse a name), so
    the second inlining must rename it.
    """
    def then_graph(name, src, out, k_value, nested=False):
        nodes = [helper.make_node("Mul", [src, "k"], [f"{name}_xk"], name=f"{name}_mul"),
                 helper.make_node("Add", [f"{name}_xk", "one_f"], [out], name=f"{name}_add")]
        if nested:  # a further If inside the taken branch, whose condition is data-dependent
            inner_then = _branch("inner_then", [helper.make_node("Relu", [f"{name}_xk"], ["it_out"], name="relu")],
                                 "it_out")
            inner_else = _branch("inner_else", [helper.make_node("Abs", [f"{name}_xk"], ["ie_out"], name="abs")],
                                 "ie_out")
            nodes[1:] = [helper.make_node("ReduceMax", [src], ["mx"], name="max", keepdims=0),
                         helper.make_node("Greater", ["mx", "zero_f"], ["pos"], name="pos"),
                         helper.make_node("If", ["pos"], [out], name="inner_if", then_branch=inner_then,
                                          else_branch=inner_else)]
        return _branch(name, nodes, out, [_init("k", np.full((2, 3), k_value, np.float32))])

    def else_graph(name, src, out):
        return _branch(name, [helper.make_node("Neg", [src], [out], name=f"{name}_neg")], out)

    nodes = [helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_graph("then", "x", "t_out", 3.0, nested),
                              else_branch=else_graph("else", "x", "e_out"))]
    if twice:
        nodes.append(helper.make_node("If", ["c"], ["z"], name="if2", then_branch=then_graph("then2", "y", "t2", -2.0),
                                      else_branch=else_graph("else2", "y", "e2")))
    else:
        nodes.append(helper.make_node("Add", ["y", "x"], ["z"], name="after"))
    inits = [_init("one_f", np.float32(1)), _init("zero_f", np.float32(0))]
    if cond_as_node:
        nodes.insert(0, helper.make_node("Constant", [], ["c"], name="cond", value=_init("v", np.array(cond))))
    else:
        inits.append(_init("c", np.array(cond)))
    return _model(nodes, [_vi("x", F, [2, 3])], [_vi("y", F, [2, 3]), _vi("z", F, [2, 3])], inits)


def _names_unique(model):
    def walk(g):
        yield from (n.name for n in g.node)
        yield from (o for n in g.node for o in n.output)
        yield from (i.name for i in g.initializer)
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from walk(a.g)
    names = list(walk(model.graph))
    return len(names) == len(set(names))


@pytest.mark.parametrize("kwargs, ops", [
    (dict(cond_as_node=True, cond=True), ["Add", "Add", "Mul"]),
    (dict(cond_as_node=False, cond=False), ["Add", "Neg"]),
    (dict(nested=True), ["Add", "Greater", "If", "Mul", "ReduceMax"]),
    (dict(twice=True), ["Add", "Add", "Mul", "Mul"]),
])
def test_if_fold_inlines_the_taken_branch(kwargs, ops):
    model = _if_model(**kwargs)
    out, stats = _apply(LoopIfFold(), model)
    assert stats["applied"] == {"loop_if_fold": ["if", "if2"] if kwargs.get("twice") else ["if"]}
    assert not stats["refused"] and _ops(out) == sorted(ops)
    assert [o.name for o in out.graph.output] == ["y", "z"]  # the interface keeps its names
    assert _names_unique(out)
    onnx.checker.check_model(out, full_check=True)
    for seed in (0, 1):
        feed = _feed(model, seed)
        want, got = ort_run(model, feed), ort_run(out, feed)
        for name in ("y", "z"):
            np.testing.assert_array_equal(got[name], want[name])


def test_if_with_a_data_dependent_condition_is_not_wanted():
    model = _if_model()
    model.graph.node[0].CopyFrom(helper.make_node("ReduceMax", ["x"], ["c0"], name="cond", keepdims=0))
    model.graph.node.insert(1, helper.make_node("Greater", ["c0", "zero_f"], ["c"], name="greater"))
    _, stats = _apply(LoopIfFold(), model)
    assert stats == {"applied": {}, "refused": []}


# --- loop_if_fold: Loop --------------------------------------------------------------------------------------------

def _loop_model(trip=3, cond=True, while_counter=None, scan=True, m_input=False, cond_input=False,
                data_cond=False, nested=False):
    """y_{i+1} = y_i * 1.5 + i (i: the iteration number, as float); scan s_i = y_{i+1} + 1.

    ``while_counter=n``: tf.while_loop style, no trip count, a carried counter
    ``c`` and condition ``c + 1 < n``; ``data_cond``: the condition reads y.
    """
    body_in = [_vi("i", I64, []), _vi("cond_in", BOOL, []), _vi("y_in", F, [2, 3])]
    body_out = [_vi("cond_out", BOOL, []), _vi("y_out", F, [2, 3])]
    body_nodes = [helper.make_node("Cast", ["i"], ["i_f"], name="i_float", to=F),
                  helper.make_node("Mul", ["y_in", "k"], ["y_k"], name="mul"),
                  helper.make_node("Add", ["y_k", "i_f"], ["y_out"], name="add")]
    body_inits = [_init("k", np.float32(1.5))]
    loop_in, loop_out = ["M" if trip is not None else "", "cond0", "x"], ["y"]
    if while_counter is not None:
        body_in.append(_vi("c_in", I64, []))
        body_out.append(_vi("c_out", I64, []))
        body_nodes += [helper.make_node("Add", ["c_in", "one_i"], ["c_out"], name="count"),
                       helper.make_node("Less", ["c_out", "limit"], ["cond_out"], name="less")]
        body_inits += [_init("one_i", np.array(1)), _init("limit", np.array(while_counter))]
        loop_in.append("c0")
        loop_out.append("c_final")
    elif data_cond:
        body_nodes += [helper.make_node("ReduceSum", ["y_out"], ["total"], name="total", keepdims=0),
                       helper.make_node("Less", ["total", "big"], ["cond_out"], name="less")]
        body_inits.append(_init("big", np.float32(100)))
    else:
        body_nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"))
    if nested:
        inner = _branch("inner", [helper.make_node("Neg", ["y_in"], ["n_out"], name="neg")], "n_out")
        body_nodes.append(helper.make_node("If", ["cond_in"], ["unused"], name="inner_if", then_branch=inner,
                                           else_branch=inner))
    if scan:
        body_out.append(_vi("s_out", F, [2, 3]))
        body_nodes.append(helper.make_node("Add", ["y_out", "one_f"], ["s_out"], name="scan_add"))
        loop_out.append("s")
    body = helper.make_graph(body_nodes, "body", body_in, body_out, initializer=body_inits)
    nodes = [helper.make_node("Loop", loop_in, loop_out, name="loop", body=body),
             helper.make_node("Mul", ["y", "two"], ["z"], name="after")]
    inits = [_init("one_f", np.float32(1)), _init("two", np.float32(2)), _init("c0", np.array(0))]
    inputs = [_vi("x", F, [2, 3])]
    if trip is not None and not m_input:
        inits.append(_init("M", np.array(trip)))
    elif m_input:
        inputs.append(_vi("M", I64, []))
    if cond_input:
        inputs.append(_vi("cond0", BOOL, []))
    else:
        inits.append(_init("cond0", np.array(cond)))
    outputs = [_vi("y", F, [2, 3]), _vi("z", F, [2, 3])] + ([_vi("s", F, ["T", 2, 3])] if scan else [])
    return _model(nodes, inputs, outputs, inits)


@pytest.mark.parametrize("kwargs, copies", [
    (dict(trip=3), 3),  # for loop with a scan output
    (dict(trip=1), 1),
    (dict(trip=None, while_counter=3, scan=False), 3),  # tf.while_loop(lambda c, y: c < 3, ...)
    (dict(trip=5, while_counter=2), 2),  # the condition stops it before the trip count
    (dict(trip=0, scan=False), 0),
    (dict(trip=16), 16),
])
def test_loop_unrolls_into_body_copies(kwargs, copies):
    model = _loop_model(**kwargs)
    out, stats = _apply(LoopIfFold(), model)
    assert stats["applied"] == {"loop_if_fold": ["loop"]} and not stats["refused"]
    ops = _ops(out)
    assert "Loop" not in ops and ops.count("Mul") == copies + 1  # one body Mul per copy, plus 'after'
    if kwargs.get("scan", True) and copies:
        assert ops.count("Unsqueeze") == copies and ops.count("Concat") == (copies > 1)
    assert [o.name for o in out.graph.output] == [o.name for o in model.graph.output]
    assert _names_unique(out)
    onnx.checker.check_model(out, full_check=True)
    for seed in (0, 1):
        feed = _feed(model, seed)
        want, got = ort_run(model, feed), ort_run(out, feed)
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("kwargs, reason", [
    (dict(m_input=True), "the trip count 'M' is computed at run time"),
    (dict(cond_input=True), "the initial condition 'cond0' is computed at run time"),
    (dict(trip=17), "runs more than 16 iterations (trip count 17)"),
    (dict(trip=None, scan=False), "runs more than 16 iterations (its condition still true)"),
    (dict(trip=4, data_cond=True), "the loop condition depends on the carried value 'y_in', whose initial value "
                                   "'x' is computed at run time"),
    (dict(trip=0), "runs 0 times and has scan outputs"),
    (dict(trip=2, nested=True), "the loop body holds a nested Loop/If/Scan"),
])
def test_loop_refusals_say_why(kwargs, reason):
    model = _loop_model(**kwargs)
    out, stats = _apply(LoopIfFold(), model)
    assert not stats["applied"] and len(_refusals(stats)) == 1 and reason in _refusals(stats)[0]
    assert "Loop" in _ops(out)


# --- onnx's own node tests for Einsum, If and Loop ----------------------------------------------------------------

NODE_TESTS = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def _recorded(case: Path, kind: str) -> list[np.ndarray]:
    arrays = []
    for f in sorted((case / "test_data_set_0").glob(f"{kind}_*.pb")):
        t = onnx.TensorProto()
        t.ParseFromString(f.read_bytes())
        arrays.append(onnx.numpy_helper.to_array(t))
    return arrays


@pytest.mark.parametrize("case", sorted(d.name for d in NODE_TESTS.glob("test_*")
                                        if re.match(r"test_(einsum|if|loop)", d.name)))
def test_onnx_node_tests_rewrite_exactly_or_refuse_with_a_reason(case):
    """Every rewrite reproduces the recorded outputs; every refusal is one line naming its cause."""
    model = onnx.load(str(NODE_TESTS / case / "model.onnx"))
    graph = gs.import_onnx(model)
    stats = apply_rules(graph, [EinsumToMatMul(), LoopIfFold()])
    assert all(r["reason"] and "\n" not in r["reason"] for r in stats["refused"])
    if not stats["applied"]:
        return
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version
    assert {n.op_type for n in out.graph.node}.isdisjoint({"Einsum", "Loop", "If"})
    onnx.checker.check_model(out, full_check=True)
    feed = dict(zip([i.name for i in out.graph.input], _recorded(NODE_TESTS / case, "input")))
    got = ort_run(out, feed)
    for vi, want in zip(out.graph.output, _recorded(NODE_TESTS / case, "output")):
        np.testing.assert_allclose(got[vi.name], want, rtol=1e-5, atol=1e-6)


# --- real tf2onnx exports through the default pipeline -------------------------------------------------------------

@pytest.fixture(scope="module")
def tf_exports(tmp_path_factory):
    """Four tiny TF functions saved and exported with the real tf2onnx, once."""
    tf = pytest.importorskip("tensorflow")
    from compiler.api import export_model

    d = tmp_path_factory.mktemp("tf_control")
    spec = tf.TensorSpec

    def cond_fn(x):  # decided by a shape, so constant once shapes are frozen
        return {"y": tf.cond(tf.shape(x)[1] > 3, lambda: x * 2.0, lambda: x - 1.0)}

    def while_fn(x):
        _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 1.5 + 1.0), (tf.constant(0), x))
        return {"y": y}

    def cnms_fn(boxes, scores):
        out = tf.image.combined_non_max_suppression(boxes, scores, max_output_size_per_class=5, max_total_size=8,
                                                    iou_threshold=0.5, score_threshold=0.1)
        return dict(zip(["b", "s", "c", "v"], out))

    functions = {
        "einsum": (lambda a, b: {"y": tf.einsum("...ij,...jk->...ik", a, b)},
                   [spec([None, 2, 3, 4], tf.float32, name="a"), spec([None, 2, 4, 5], tf.float32, name="b")]),
        "cond": (cond_fn, [spec([None, None], tf.float32)]),
        "while": (while_fn, [spec([None, 4], tf.float32)]),
        "cnms": (cnms_fn, [spec([None, 20, 1, 4], tf.float32), spec([None, 20, 3], tf.float32)]),
    }
    paths = {}
    for name, (fn, sig) in functions.items():
        module = tf.Module()
        module.f = tf.function(fn, input_signature=sig)
        tf.saved_model.save(module, str(d / name), signatures={"serving_default": module.f})
        paths[name] = export_model(d / name, d / f"{name}.onnx").path
    return paths


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("name, shapes, rule, gone", [
    ("einsum", {"a": (2, 2, 3, 4), "b": (2, 2, 4, 5)}, "einsum_to_matmul", "Einsum"),
    ("cond", {"x": (2, 5)}, None, "If"),  # fold_constants already flattens it once the shape is frozen
    ("while", {"x": (2, 4)}, "loop_if_fold", "Loop"),
    ("cnms", {}, "nms_count_cumsum", None),  # dynamic batch: the count's bound does not need it
])
def test_real_exports_through_the_default_pipeline(tf_exports, name, shapes, rule, gone):
    import passes

    model = onnx.load(str(tf_exports[name]))
    exported_ops = {n.op_type for n in model.graph.node}
    assert gone is None or gone in exported_ops
    manager = passes.PassManager(passes.default_pipeline(input_shapes=shapes))
    out = manager.run(onnx.load(str(tf_exports[name])))
    applied = {r for rec in manager.records for r in rec.stats.get("applied", {})}
    assert rule is None or rule in applied
    assert gone is None or gone not in {n.op_type for n in out.graph.node}
    assert check_model(out).supported, check_model(out).findings
    onnx.checker.check_model(out, full_check=True)
    if name == "cnms":
        feeds = [_nms_feed(b, 3, 20, b) for b in (1, 3)]
        for feed in feeds:
            feed["boxes"] = feed["boxes"][:, :, None, :]
            feed["scores"] = np.ascontiguousarray(feed["scores"].transpose(0, 2, 1))
    else:
        feeds = [_feed(model, seed, shapes) for seed in (0, 1)]
    for feed in feeds:
        want, got = ort_run(model, feed), ort_run(out, feed)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6)
