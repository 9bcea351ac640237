"""TensorRT capability pre-flight against the parser's support table: each rule, on small real graphs."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from passes.trt_support import TOPK_MAX, check_model, load_table

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "t", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    m.ir_version = 9
    onnx.checker.check_model(m, full_check=True)  # every test graph is valid ONNX: only TensorRT may object
    return m


def _vi(name, t=F, shape=(1, 3, 8, 8)):
    return helper.make_tensor_value_info(name, t, list(shape))


def _resize(**attrs):
    n = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", **attrs)
    return _model([n], [_vi("x")], [_vi("y", shape=(1, 3, 16, 16))],
                  [onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])


def _topk(k, **attrs):
    n = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk", axis=-1, **attrs)
    return _model([n], [_vi("x", shape=(1, 8000))], [_vi("v", shape=(1, k)), _vi("i", TensorProto.INT64, (1, k))],
                  [onnx.numpy_helper.from_array(np.array([k], np.int64), "k")])


def _scatter(reduction):
    n = helper.make_node("ScatterND", ["x", "idx", "upd"], ["y"], name="scatter", reduction=reduction)
    return _model([n], [_vi("x", shape=(4,)), _vi("idx", TensorProto.INT64, (2, 1)), _vi("upd", shape=(2,))],
                  [_vi("y", shape=(4,))])


@pytest.mark.parametrize("model, supported, words", [
    (lambda: _resize(mode="linear", coordinate_transformation_mode="half_pixel"), True, []),
    (lambda: _resize(mode="linear", coordinate_transformation_mode="half_pixel_symmetric"), False,
     ["half_pixel_symmetric"]),
    (lambda: _resize(mode="cubic"), False, ["mode 'cubic'"]),
    (lambda: _resize(mode="linear", antialias=1), False, ["antialias"]),
    (lambda: _topk(5), True, []),
    (lambda: _topk(TOPK_MAX + 1), False, [f"K = {TOPK_MAX + 1}", "topk_split"]),
    (lambda: _topk(5, sorted=0), False, ["sorted must be 1"]),
    (lambda: _scatter("none"), True, []),
    (lambda: _scatter("add"), False, ["reduction 'add'"]),
])
def test_attribute_restrictions(model, supported, words):
    result = check_model(model())
    assert result.supported == supported, [f.text() for f in result.findings]
    text = " ".join(f.text() for f in result.findings)
    assert all(w in text for w in words), text


def test_unsupported_op_and_dtypes():
    det = _model([helper.make_node("Det", ["x"], ["y"], name="det")], [_vi("x", shape=(2, 3, 3))],
                 [_vi("y", shape=(2,))])
    assert [f.op for f in check_model(det).findings] == ["Det"]
    assert check_model(det).findings[0].reason == "marked unsupported in the parser's support table"
    double = _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", TensorProto.DOUBLE)],
                    [_vi("y", TensorProto.DOUBLE)])
    assert "float64" in check_model(double).findings[0].reason
    u8 = _model([helper.make_node("Cast", ["x"], ["f"], name="to_float", to=F),
                 helper.make_node("Cast", ["f"], ["u"], name="to_u8", to=TensorProto.UINT8),
                 helper.make_node("Add", ["u", "u"], ["y"], name="add_u8")],
                [_vi("x", TensorProto.UINT8)], [_vi("y", TensorProto.UINT8)])
    findings = check_model(u8).findings
    # The cast reading the input is fine; a cast making UINT8 inside the network and the Add on it are not.
    assert [f.node for f in findings] == ["to_u8", "add_u8"]
    assert findings[0].reason.startswith("UINT8 inside the network") and "right after the input" in findings[0].fix


def test_subgraph_bodies_are_checked():
    then_g = helper.make_graph([helper.make_node("Det", ["x"], ["t"], name="det_in_branch")], "then", [],
                               [_vi("t", shape=(2,))])
    else_g = helper.make_graph([helper.make_node("ReduceMax", ["x", "axes"], ["e"], name="max", keepdims=0)],
                               "else", [], [_vi("e", shape=(2,))],
                               [onnx.numpy_helper.from_array(np.array([1, 2], np.int64), "axes")])
    node = helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g)
    model = _model([node], [_vi("x", shape=(2, 3, 3)), _vi("c", TensorProto.BOOL, ())], [_vi("y", shape=(2,))])
    findings = check_model(model).findings
    assert [(f.node, f.where) for f in findings] == [("det_in_branch", "If 'if' then_branch")]


def test_table_is_packaged_and_trt11_adds_swish():
    assert load_table(10)["Conv"].supported and "Swish" not in load_table(10)
    assert load_table(11)["Swish"].supported


# What TensorRT's parser rejects in each fixture as tf2onnx exports it (before any rewrite).
RAW_UNSUPPORTED = {"topk_large": {"TopK"}, "combined_nms": {"CumSum"}, "resize_modes": {"Resize"},
                   "scatter_nd": {"ScatterND"}, "dtypes": {"CumSum", "MatMul", "Tanh"},
                   "uint8_image": {"Cast", "ReverseSequence", "Shape", "Slice", "Transpose"}}
# Each catalogue rule, and a fixture whose export needs it.
NEEDED_BY = {"loop_if_fold": "control_flow", "float64_to_float32": "dtypes", "uint8_input_region": "uint8_image",
             "nms_count_cumsum": "combined_nms", "cumsum_integer_scan": "dtypes", "topk_split": "topk_large",
             "scatternd_reduction": "scatter_nd", "resize_supported": "resize_modes", "einsum_to_matmul": "einsum"}


@pytest.fixture(scope="module")
def optimized(exported, tmp_path_factory):
    """fixture name -> (exported path, optimized path, pass records), made on first use."""
    from compiler.api import optimize_model
    from compiler.cli import _optimize_cfg, make_parser
    from tests.conftest import COMPILABLE

    d, cache = tmp_path_factory.mktemp("optimized"), {}

    def get(name):
        if name not in cache:
            a = make_parser().parse_args(["optimize", "in.onnx", "out.onnx", *COMPILABLE[name]])
            art, records = optimize_model(exported[name], d / f"{name}.onnx", _optimize_cfg(a))
            cache[name] = (exported[name], art.path, records)
        return cache[name]
    return get


def _applied(records) -> set[str]:
    return {rule for r in records if isinstance(r.stats, dict) for rule in r.stats.get("applied", {})}


@pytest.mark.tf
@pytest.mark.parametrize("name", sorted(__import__("tests.conftest", fromlist=["COMPILABLE"]).COMPILABLE))
def test_check_trt_verdict_on_every_fixture(capsys, optimized, name):
    """The raw export fails exactly where expected; after the passes every fixture is fully supported."""
    from tests.conftest import COMPILABLE, run_cli

    raw, _, _ = optimized(name)
    assert {f.op for f in check_model(onnx.load(str(raw))).findings} == RAW_UNSUPPORTED.get(name, set())
    code, stdout, _ = run_cli(capsys, "check-trt", raw, *COMPILABLE[name], "--json")
    verdict = json.loads(stdout)
    assert code == 0 and verdict["supported"] and verdict["nodes_checked"] > 0, verdict["findings"]
    assert verdict["tensorrt_parser"] is None  # no TensorRT here; said so, not faked
    if name in RAW_UNSUPPORTED:  # and without the rewrites, check-trt says no and names the rule that fixes it
        code, stdout, _ = run_cli(capsys, "check-trt", raw, *COMPILABLE[name], "--skip-pass", "rewrite_tensorrt")
        assert code == 1 and "nodes unsupported by TensorRT's ONNX parser" in stdout


def test_every_catalogue_rule_has_a_fixture_that_needs_it():
    from passes.rules.catalogue import CATALOGUE

    assert set(NEEDED_BY) == {r.name for r in CATALOGUE}


@pytest.mark.tf
@pytest.mark.parametrize("rule", sorted(NEEDED_BY))
def test_rule_fires_on_its_fixture(optimized, rule):
    _, _, records = optimized(NEEDED_BY[rule])
    assert rule in _applied(records)


def test_check_trt_shows_why_a_rule_refused(tmp_path, capsys):
    from tests.conftest import run_cli

    nodes = [helper.make_node("ScatterND", ["x", "idx", "upd"], ["y"], name="scatter_mul", reduction="mul")]
    model = _model(nodes, [_vi("x", shape=(8, 4)), _vi("idx", TensorProto.INT64, (3, 1)), _vi("upd", shape=(3, 4))],
                   [_vi("y", shape=(8, 4))])
    path = tmp_path / "scatter.onnx"
    onnx.save(model, str(path))
    code, stdout, _ = run_cli(capsys, "check-trt", path)
    assert code == 1
    assert "ScatterND 'scatter_mul'" in stdout and "rule 'scatternd_reduction' would rewrite it but refused" in stdout


def test_check_trt_cli_unsupported_and_compile_behaviour(tmp_path, capsys):
    from tests.conftest import run_cli, tensorrt_available

    det = _model([helper.make_node("Det", ["x"], ["y"], name="det")], [_vi("x", shape=(2, 3, 3))],
                 [_vi("y", shape=(2,))])
    path = tmp_path / "det.onnx"
    onnx.save(det, str(path))
    code, stdout, _ = run_cli(capsys, "check-trt", path)
    assert code == 1 and "Det 'det' (main graph): marked unsupported in the parser's support table" in stdout
    # The onnxruntime backend still builds it, with a notice; a TensorRT build stops before building.
    code, stdout, stderr = run_cli(capsys, path, tmp_path / "det.engine", "--backend", "onnxruntime")
    assert code == 0 and "1 of 1 nodes unsupported by TensorRT's ONNX parser" in stdout, stderr
    if not tensorrt_available()[0]:
        code, _, stderr = run_cli(capsys, path, tmp_path / "det_trt.engine", "--backend", "tensorrt")
        assert code == 6 and "would reject 1 node(s): Det 'det'" in stderr
        assert not (tmp_path / "det_trt.engine").exists()
