"""topk_split, scatternd_reduction, resize_supported: structure, numerics vs onnxruntime, checker, idempotence,
refusals.

Each rewrite runs on a small hand-built model and is compared with onnxruntime
on the original; the last tests export real TF functions with tf2onnx and run
the default pipeline on them.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper

from passes.rules import apply_rules
from passes.rules.resize import ResizeSupported
from passes.rules.scatternd import ScatterNDReduction
from passes.rules.topk import TopKSplit
from passes.trt_support import check_model
from tests.conftest import ort_run

F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, inits=(), opset=17, check=True):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=[onnx.numpy_helper.from_array(np.asarray(v), k)
                                                                    for k, v in dict(inits).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset <= 17 else 9
    if check:  # the originals are valid models, except where a refusal test needs an invalid one
        onnx.checker.check_model(m, full_check=True)
    return m


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _rewrite(model, rule):
    """Apply ``rule`` once; returns the graph, the stats and the exported model."""
    graph = gs.import_onnx(model)
    stats = apply_rules(graph, [rule])
    return graph, stats, gs.export_onnx(graph)


def _assert_rewritten(model, rule, feed, exact=False, atol=1e-6, rtol=1e-6, canon=lambda name, v: v):
    """Applied once, checker-clean, nothing left for TensorRT to reject, same numbers, and a no-op the second time.

    ``canon(name, value)`` puts outputs whose order is unspecified into a canonical one before comparing.
    """
    graph, stats, out = _rewrite(model, rule)
    assert list(stats["applied"]) == [rule.name] and not stats["refused"], stats
    onnx.checker.check_model(out, full_check=True)
    assert check_model(out).supported, [f.text() for f in check_model(out).findings]
    want, got = ({k: canon(k, v) for k, v in ort_run(m, feed).items()} for m in (model, out))
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        if exact or want[k].dtype.kind in "iu":
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        else:
            np.testing.assert_allclose(got[k], want[k], atol=atol, rtol=rtol, err_msg=k)
    assert not any(rule.wants(n, graph) for n in graph.nodes if n.op == rule.op)
    again = apply_rules(graph, [rule])
    assert again == {"applied": {}, "refused": []}
    return out


def _refusal(model, rule) -> str:
    _, stats, _ = _rewrite(model, rule)
    assert not stats["applied"] and len(stats["refused"]) == 1, stats
    return stats["refused"][0]["reason"]


def _ops(model):
    return [n.op_type for n in model.graph.node]


# --- topk_split --------------------------------------------------------------------------------------------------

def _topk_model(shape, k, axis=-1, largest=1, sorted_=1, elem=F32, k_input=False, outputs=("values", "indices"),
                check=True):
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=axis, largest=largest, sorted=sorted_)
    ins = [_vi("x", elem, shape)] + ([_vi("k", I64, [1])] if k_input else [])
    out_shape = [("K" if k_input else k) if a == axis % len(shape) else d for a, d in enumerate(shape)]
    outs = [_vi(o, elem if o == "values" else I64, out_shape) for o in outputs]
    return _model([node], ins, outs, {} if k_input else {"k": np.array([k], np.int64)}, check=check)


@pytest.mark.parametrize("shape, k, axis, largest, sorted_", [
    ((2, 9000), 8000, -1, 1, 1),   # three rounds: 3840 + 3840 + 320
    ((4100, 3), 4100, 0, 0, 1),    # the whole axis, smallest first, on axis 0
    ((3, 5000, 2), 3841, 1, 1, 0),  # sorted=0 may return any order; the rewrite returns the sorted one
])
def test_topk_split_structure_numerics(shape, k, axis, largest, sorted_):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    model = _topk_model(shape, k, axis, largest, sorted_)
    canon = (lambda name, v: v) if sorted_ else (lambda name, v: np.sort(v, axis=axis))  # no ties: sets compare
    out = _assert_rewritten(model, TopKSplit(), {"x": x}, exact=True, canon=canon)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in out.graph.initializer}
    ks = [int(inits[n.input[1]][0]) for n in out.graph.node if n.op_type == "TopK"]
    assert len(ks) == -(-k // 3840) and max(ks) <= 3840 and sum(ks) == k


def test_topk_split_ties_are_exact_for_values_and_indices():
    """Many equal values across round boundaries: the lower index still comes first, in every round."""
    x = np.random.default_rng(2).integers(0, 5, size=(2, 9000)).astype(np.int32)
    model = _topk_model((2, 9000), 8500, elem=TensorProto.INT32)
    _assert_rewritten(model, TopKSplit(), {"x": x}, exact=True)


def test_topk_split_only_values_used():
    x = np.random.default_rng(3).normal(size=(1, 4500)).astype(np.float32)
    out = _assert_rewritten(_topk_model((1, 4500), 4000, outputs=("values",)), TopKSplit(), {"x": x}, exact=True)
    assert _ops(out).count("Concat") == 1


def test_topk_split_fill_ties_keep_values_but_may_repeat_indices():
    """The documented limit: input −inf reached after the first round ties with the masked slots."""
    x = np.full((1, 5000), -np.inf, np.float32)
    x[0, ::2] = np.random.default_rng(4).normal(size=2500)
    model = _topk_model((1, 5000), 4500)
    _, _, out = _rewrite(model, TopKSplit())
    want, got = ort_run(model, {"x": x}), ort_run(out, {"x": x})
    np.testing.assert_array_equal(got["values"], want["values"])
    assert len(np.unique(got["indices"])) < 4500  # a masked slot was picked again


@pytest.mark.parametrize("model, reason", [
    (_topk_model((2, 5000), 0, k_input=True), "K is not a constant"),
    (_topk_model(("N", 5000), 4000, axis=0), "length of the TopK axis is not static"),
    (_topk_model((2, 5000), 6000, check=False), "K = 6000 exceeds the axis length 5000"),
])
def test_topk_split_refusals(model, reason):
    assert reason in _refusal(model, TopKSplit())


def test_topk_split_leaves_small_k_alone():
    _, stats, _ = _rewrite(_topk_model((2, 5000), 3840), TopKSplit())
    assert stats == {"applied": {}, "refused": []}


# --- scatternd_reduction ------------------------------------------------------------------------------------------

def _scatter_model(reduction, indices=None, ishape=(4, 2), dshape=(5, 4, 3), elem=F32, opset=18):
    ushape = list(ishape[:-1]) + list(dshape[ishape[-1]:])
    node = helper.make_node("ScatterND", ["data", "indices", "updates"], ["y"], reduction=reduction)
    ins = [_vi("data", elem, list(dshape)), _vi("updates", elem, ushape)]
    if indices is None:
        ins.append(_vi("indices", I64, list(ishape)))
    return _model([node], ins, [_vi("y", elem, list(dshape))],
                  {} if indices is None else {"indices": np.asarray(indices, np.int64)}, opset)


def _scatter_feed(model, seed=0, indices=None):
    rng = np.random.default_rng(seed)
    feed = {}
    for i in model.graph.input:
        shape = [d.dim_value for d in i.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
        feed[i.name] = rng.uniform(0.5, 2, shape).astype(dtype) if dtype.kind == "f" else \
            rng.integers(-5, 5, shape).astype(dtype)
    if indices is not None:
        feed["indices"] = np.asarray(indices, np.int64)
    return feed


UNIQUE = [[0, 1], [4, 3], [2, 0], [-1, 1]]       # -1 is row 4: unique once normalised
REPEATED = [[0, 1], [2, 2], [0, 1], [0, 1], [2, 2], [-5, 1]]  # (0,1) four times, (2,2) twice


@pytest.mark.parametrize("reduction", ["add", "mul", "max", "min"])
@pytest.mark.parametrize("indices", [UNIQUE, REPEATED], ids=["unique", "repeated"])
def test_scatternd_constant_indices_are_bit_exact(reduction, indices):
    model = _scatter_model(reduction, indices, ishape=np.shape(indices))
    out = _assert_rewritten(model, ScatterNDReduction(), _scatter_feed(model), exact=True)
    layers = 1 if indices is UNIQUE else 4
    assert _ops(out).count("ScatterND") == layers and _ops(out).count("GatherND") == layers
    assert all(n.attribute == [] for n in out.graph.node if n.op_type == "ScatterND")  # reduction='none'


def test_scatternd_integer_data_constant_indices():
    model = _scatter_model("add", REPEATED, ishape=(6, 2), elem=TensorProto.INT32)
    _assert_rewritten(model, ScatterNDReduction(), _scatter_feed(model), exact=True)


@pytest.mark.parametrize("ishape, dshape", [((6, 1), (4, 3)), ((2, 3, 2), (5, 4, 3)), ((7, 3), (3, 4, 2))])
def test_scatternd_add_runtime_indices_one_hot(ishape, dshape):
    model = _scatter_model("add", None, ishape=ishape, dshape=dshape)
    rng = np.random.default_rng(5)
    # duplicates on purpose, and negative indices
    idx = np.stack([rng.integers(-d, d, size=ishape[:-1]) for d in dshape[:ishape[-1]]], -1)
    idx.reshape(-1, ishape[-1])[1] = idx.reshape(-1, ishape[-1])[0]
    out = _assert_rewritten(model, ScatterNDReduction(), _scatter_feed(model, indices=idx), atol=1e-6, rtol=1e-6)
    assert "ScatterND" not in _ops(out) and "MatMul" in _ops(out)


def test_scatternd_add_many_repeats_goes_one_hot():
    idx = [[1]] * 20 + [[3]]
    model = _scatter_model("add", idx, ishape=(21, 1), dshape=(4, 3))
    out = _assert_rewritten(model, ScatterNDReduction(), _scatter_feed(model))
    assert "MatMul" in _ops(out) and "ScatterND" not in _ops(out)


@pytest.mark.parametrize("model, reason", [
    (_scatter_model("max", None), "reduction 'max' with indices computed at run time"),
    (_scatter_model("mul", [[1]] * 17, ishape=(17, 1), dshape=(4, 3)), "repeats 17 times"),
    (_scatter_model("add", None, elem=TensorProto.INT32), "needs float32/float16 data"),
    (_scatter_model("add", [[0, 1], [5, 0]], ishape=(2, 2)), "out of range"),
    (_scatter_model("add", None, ishape=(4, 2), dshape=("N", 4, 3)), "need static shapes"),
    (_scatter_model("add", None, ishape=(3000, 1), dshape=(2000, 2)), "one-hot matrix would have 2000×3000"),
])
def test_scatternd_refusals(model, reason):
    assert reason in _refusal(model, ScatterNDReduction())


# --- resize_supported ---------------------------------------------------------------------------------------------

def _resize_model(in_shape, out_shape, roi=None, scales=None, sizes=None, opset=19, **attrs):
    inits, names = {}, ["x"]
    for name, v, dtype in (("roi", roi, np.float32), ("scales", scales, np.float32), ("sizes", sizes, np.int64)):
        if v is not None:
            inits[name] = np.asarray(v, dtype)
        names.append(name if v is not None else "")
    while names[-1] == "":
        names.pop()
    node = helper.make_node("Resize", names, ["y"], **attrs)
    return _model([node], [_vi("x", F32, list(in_shape))], [_vi("y", F32, list(out_shape))], inits, opset)


def _resize_feed(model, seed=0):
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return {"x": np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)}


def _attr(model, op, name):
    node = next(n for n in model.graph.node if n.op_type == op)
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


WHOLE = [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("mode, kw, out", [
    ("linear", {"sizes": [1, 2, 9, 13]}, (1, 2, 9, 13)),
    ("nearest", {"sizes": [1, 2, 3, 4]}, (1, 2, 3, 4)),
    ("linear", {"scales": [1, 1, 1.5, 2.0]}, (1, 2, 7, 14)),
])
def test_resize_tf_crop_and_resize_whole_image_is_align_corners(mode, kw, out):
    """The identity, checked against onnxruntime's own tf_crop_and_resize."""
    model = _resize_model((1, 2, 5, 7), out, roi=WHOLE, mode=mode, coordinate_transformation_mode="tf_crop_and_resize",
                          **kw)
    rewritten = _assert_rewritten(model, ResizeSupported(), _resize_feed(model), exact=True)
    assert _ops(rewritten) == ["Resize"] and _attr(rewritten, "Resize", "coordinate_transformation_mode") == \
        b"align_corners"


@pytest.mark.parametrize("mode, kw, out", [
    ("linear", {"sizes": [1, 2, 9, 13]}, (1, 2, 9, 13)),
    ("nearest", {"sizes": [1, 2, 3, 4]}, (1, 2, 3, 4)),
    ("linear", {"scales": [1, 1, 0.6, 3.0]}, (1, 2, 3, 21)),
])
def test_resize_half_pixel_symmetric_with_integral_sizes_is_half_pixel(mode, kw, out):
    """The identity, checked against onnxruntime's own half_pixel_symmetric (which evaluates in double)."""
    model = _resize_model((1, 2, 5, 7), out, mode=mode, coordinate_transformation_mode="half_pixel_symmetric", **kw)
    rewritten = _assert_rewritten(model, ResizeSupported(), _resize_feed(model), atol=1e-5, rtol=1e-5)
    assert _ops(rewritten) == ["Resize"] and _attr(rewritten, "Resize", "coordinate_transformation_mode") == \
        b"half_pixel"


@pytest.mark.parametrize("in_shape, out, kw", [
    # tf2onnx's bicubic (TF's ResizeBicubic with half-pixel centers), NCHW
    ((2, 3, 6, 8), (2, 3, 13, 17), dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1, sizes=[2, 3, 13, 17])),
    # ONNX's default cubic, downscaling one axis
    ((1, 2, 9, 7), (1, 2, 4, 7), dict(mode="cubic", scales=[1, 1, 0.5, 1])),
    # antialiased downscale
    ((1, 3, 12, 10), (1, 3, 5, 4), dict(mode="linear", antialias=1, sizes=[1, 3, 5, 4])),
    ((1, 1, 12, 10), (1, 1, 5, 4), dict(mode="cubic", antialias=1, sizes=[1, 1, 5, 4])),
    # crop and resize of a box, and one reaching outside the image (extrapolation 0)
    ((1, 2, 6, 8), (1, 2, 5, 5), dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                                      roi=[0, 0, 0.2, 0.1, 1, 1, 0.7, 0.9], sizes=[1, 2, 5, 5])),
    ((1, 2, 6, 8), (1, 2, 5, 5), dict(mode="nearest", coordinate_transformation_mode="tf_crop_and_resize",
                                      roi=[0, 0, -0.2, 0.1, 1, 1, 0.7, 1.3], sizes=[1, 2, 5, 5])),
    # half_pixel_symmetric where scale × length is not integral
    ((1, 2, 5, 7), (1, 2, 6, 11), dict(mode="linear", coordinate_transformation_mode="half_pixel_symmetric",
                                       scales=[1, 1, 1.3, 1.7])),
    # NHWC: the resized axes are 1 and 2 (a reshape around the MatMul for axis 1)
    ((2, 6, 8, 3), (2, 13, 17, 3), dict(mode="cubic", sizes=[2, 13, 17, 3])),
    # opset 18's axes attribute
    ((1, 4, 6, 8), (1, 4, 6, 3), dict(mode="cubic", axes=[3], scales=[0.4])),
    ((1, 4, 6, 8), (1, 4, 6, 3), dict(mode="cubic", axes=[3], sizes=[3])),
])
def test_resize_interpolation_matrices(in_shape, out, kw):
    model = _resize_model(in_shape, out, **kw)
    rewritten = _assert_rewritten(model, ResizeSupported(), _resize_feed(model), atol=1e-5, rtol=1e-5)
    changed = sum(i != o for i, o in zip(in_shape, out)) or 1
    assert "Resize" not in _ops(rewritten) and _ops(rewritten).count("MatMul") == changed


@pytest.mark.parametrize("kw", [dict(scales=[0.4]), dict(sizes=[3])])
def test_resize_negative_axes(kw):
    """onnxruntime 1.23 cannot run Resize with axes=[-1] (scales: init error; sizes: segfault), so the rule's
    self-check uses the normalised axes; compare with the same model written with axes=[3]."""
    model = _resize_model((1, 4, 6, 8), (1, 4, 6, 3), mode="cubic", axes=[-1], **kw)
    graph, stats, out = _rewrite(model, ResizeSupported())
    assert list(stats["applied"]) == ["resize_supported"] and "Resize" not in _ops(out)
    onnx.checker.check_model(out, full_check=True)
    reference = _resize_model((1, 4, 6, 8), (1, 4, 6, 3), mode="cubic", axes=[3], **kw)
    feed = _resize_feed(model)
    np.testing.assert_allclose(ort_run(out, feed)["y"], ort_run(reference, feed)["y"], atol=1e-5, rtol=1e-5)


def test_resize_that_changes_nothing_becomes_identity():
    model = _resize_model((1, 2, 5, 7), (1, 2, 5, 7), mode="cubic", scales=[1, 1, 1, 1])
    assert _ops(_assert_rewritten(model, ResizeSupported(), _resize_feed(model), exact=True)) == ["Identity"]


@pytest.mark.parametrize("model, reason", [
    (_resize_model((2, 6, 8, 3), (4, 13, 17, 3), mode="cubic", sizes=[4, 13, 17, 3]), "resizes 3 axes"),
    (_resize_model((1, 1, "H", 8), (1, 1, "H2", 16), mode="cubic", scales=[1, 1, 2, 2]), "shapes must be static"),
    (_resize_model((1, 1, 3000, 8), (1, 1, 4500, 16), mode="cubic", scales=[1, 1, 1.5, 2]),
     "4500×3000 interpolation matrix exceeds"),
    (_resize_model((1, 1, 8, 8), (1, 1, 4, 4), mode="cubic", sizes=[1, 1, 8, 4],
                   keep_aspect_ratio_policy="not_larger"), "keep_aspect_ratio_policy"),
    (_resize_model((1, 1, 6, 8), (1, 1, 5, 5), mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                   roi=[0, 0, -0.2, 0.1, 1, 1, 0.7, 1.3], sizes=[1, 1, 5, 5], extrapolation_value=5.0), "affine"),
])
def test_resize_refusals(model, reason):
    assert reason in _refusal(model, ResizeSupported())


def test_resize_matrices_evaluated_in_batches_of_rows(monkeypatch):
    """A long input axis: the identity's rows go through the Resize in batches (here 5 + 5 + 2 of 12)."""
    import passes.rules.resize as resize

    monkeypatch.setattr(resize, "MAX_MATRIX", 60)
    model = _resize_model((1, 3, 12, 10), (1, 3, 5, 4), mode="linear", antialias=1, sizes=[1, 3, 5, 4])
    _assert_rewritten(model, ResizeSupported(), _resize_feed(model), atol=1e-5, rtol=1e-5)


def test_resize_matrices_that_disagree_with_the_resize_are_refused(monkeypatch):
    """The self-check: matrices that do not reproduce the node (here: rows reversed) are never applied."""
    right = ResizeSupported._matrix
    monkeypatch.setattr(ResizeSupported, "_matrix", staticmethod(lambda *a: right(*a)[::-1]))
    model = _resize_model((1, 2, 6, 8), (1, 2, 13, 17), mode="cubic", sizes=[1, 2, 13, 17])
    assert "interpolation matrices do not reproduce this Resize" in _refusal(model, ResizeSupported())


def test_resize_runtime_scales_refused():
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic")
    model = _model([node], [_vi("x", F32, [1, 1, 4, 4]), _vi("scales", F32, [4])], [_vi("y", F32, [1, 1, 8, 8])],
                   opset=19)
    assert "scales is computed at run time" in _refusal(model, ResizeSupported())


def test_resize_leaves_supported_modes_alone():
    model = _resize_model((1, 2, 5, 7), (1, 2, 9, 13), mode="linear", coordinate_transformation_mode="align_corners",
                          sizes=[1, 2, 9, 13])
    assert _rewrite(model, ResizeSupported())[1] == {"applied": {}, "refused": []}


# --- real tf2onnx exports through the default pipeline ---------------------------------------------------------------

TF_CASES = {
    # name: (function, input specs as (name, shape, dtype), rule expected to fire or None)
    "topk_4000": (lambda x: __import__("tensorflow").math.top_k(x, k=4000), [("x", (2, 5000), "float32")],
                  "topk_split"),
    "scatter_add_const": (lambda x, u: __import__("tensorflow").tensor_scatter_nd_add(x, [[1], [3], [1]], u),
                          [("x", (6, 4), "float32"), ("u", (3, 4), "float32")], "scatternd_reduction"),
    "scatter_add_runtime": (lambda x, i, u: __import__("tensorflow").tensor_scatter_nd_add(x, i, u),
                            [("x", (6, 4), "float32"), ("i", (5, 1), "int32"), ("u", (5, 4), "float32")],
                            "scatternd_reduction"),
    "resize_bicubic": (lambda x: __import__("tensorflow").image.resize(x, [13, 17], method="bicubic"),
                       [("x", (1, 6, 8, 3), "float32")], "resize_supported"),
    "resize_bilinear_align_corners": (
        lambda x: __import__("tensorflow").compat.v1.image.resize_bilinear(x, [13, 17], align_corners=True),
        [("x", (1, 6, 8, 3), "float32")], None),  # align_corners linear: TensorRT takes it as it is
}


@pytest.fixture(scope="module")
def tf_exports(tmp_path_factory):
    tf = pytest.importorskip("tensorflow")
    from compiler.api import export_model

    d = tmp_path_factory.mktemp("tf_rules")
    paths = {}
    for name, (fn, specs, _) in TF_CASES.items():
        m = tf.Module()
        m.f = tf.function(fn, input_signature=[tf.TensorSpec(s, dt, name=n) for n, s, dt in specs])
        tf.saved_model.save(m, str(d / name), signatures=m.f)
        paths[name] = export_model(d / name, d / f"{name}.onnx").path
    return paths


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("name", list(TF_CASES))
def test_rules_on_tf2onnx_exports(tf_exports, name):
    import passes

    _, specs, rule = TF_CASES[name]
    model = onnx.load(str(tf_exports[name]))
    manager = passes.PassManager(passes.default_pipeline(input_shapes={n: s for n, s, _ in specs}))
    out = manager.run(model)
    applied = {r for rec in manager.records if rec.name == "rewrite_tensorrt" for r in rec.stats["applied"]}
    assert applied == ({rule} if rule else set())
    assert check_model(out).supported, [f.text() for f in check_model(out).findings]
    rng = np.random.default_rng(7)
    feed = {n: (rng.uniform(-1, 1, s) if dt.startswith("float") else rng.integers(0, 6, s)).astype(dt)
            for n, s, dt in specs}  # the only integer input indexes 6 rows
    want, got = ort_run(model, feed), ort_run(out, feed)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=1e-5, err_msg=k)
