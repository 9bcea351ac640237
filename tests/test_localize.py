"""Localize: the first node where two ONNX models diverge, and the pass that created it.

Real exported fixtures throughout: a changed weight fails the regression check and is named exactly, fp16 is
named only under tight tolerances, batching finds the same node, and a wrong user rule stops compile with the
node the rule made and ``user_rules`` in the error line.
"""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compiler.errors import ValidationError
from compiler.localize import localize, localize_seam, random_feeds
from passes.infra import provenance
from tests.conftest import COMPILABLE, FIXTURES, run_cli

pytestmark = pytest.mark.tf

FP16_TOLERANCES = (1e-2, 1e-2)  # config.PRECISION_TOLERANCES["fp16"]


def _perturb(model_path, out, node_filter, factor=1.03):
    """Copy ``model_path`` to ``out`` with the weight initializer of the first node ``node_filter`` accepts
    scaled by ``factor``; returns that node."""
    model = onnx.load(str(model_path))
    inits = {i.name: i for i in model.graph.initializer}
    node = next(n for n in model.graph.node if node_filter(n) and any(i in inits for i in n.input))
    init = inits[next(i for i in node.input if i in inits)]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.asarray(factor, np.float32), init.name))
    onnx.save(model, str(out))
    return node


@pytest.fixture(scope="module")
def cnn(exported, tmp_path_factory):
    """cnn_nhwc exported, optimized, lowered to fp16, and the optimized graph with its second Conv's weight
    scaled by 3%."""
    from compiler.api import lower_precision, optimize_model
    from compiler.config import OptimizeConfig, PrecisionConfig

    out = tmp_path_factory.mktemp("localize")
    onnx_path = exported["cnn_nhwc"]
    optimized, _ = optimize_model(onnx_path, out / "cnn.opt.onnx")
    fp16, _, _ = lower_precision(onnx_path, out / "cnn.fp16.onnx", OptimizeConfig(), PrecisionConfig(mode="fp16"))
    convs = [n for n in onnx.load(str(optimized.path)).graph.node if n.op_type == "Conv"]
    node = _perturb(optimized.path, out / "cnn.bad.onnx", lambda n: n.name == convs[1].name)
    return {"exported": onnx_path, "optimized": optimized.path, "fp16": fp16.path, "bad": out / "cnn.bad.onnx",
            "node": node, "dir": out}


def test_changed_weight_fails_check_and_localize_names_that_node(cnn):
    from compiler.regress import check, record

    record(cnn["optimized"], cnn["dir"] / "golden", samples=2)
    assert check(cnn["optimized"], cnn["dir"] / "golden")["passed"]
    assert not check(cnn["bad"], cnn["dir"] / "golden")["passed"]

    feeds = random_feeds(cnn["optimized"], cnn["bad"])
    result = localize(cnn["optimized"], cnn["bad"], feeds)
    d = result.first_divergence
    origin = provenance(onnx.load(str(cnn["bad"])))
    assert not result and d is not None
    assert (d.node, d.op, d.created_by) == (cnn["node"].name, "Conv", origin.get(cnn["node"].name, "export"))
    assert d.tensor == cnn["node"].output[0] and d.created_by == "export"
    assert [s.node for s in d.suspects] == [d.node]  # its input matched: nothing upstream is suspect
    assert 0.01 < d.max_rel < 0.05 and d.max_abs > d.atol == 1e-5  # the weights were scaled by 3%
    line = result.line()
    assert line.startswith(f"first divergent node: {d.node} (Conv, created by export): tensor '{d.tensor}'")
    assert "\n" not in line


def test_identical_models_do_not_diverge(cnn):
    result = localize(cnn["optimized"], cnn["optimized"], random_feeds(cnn["optimized"], cnn["optimized"]))
    assert result and result.first_divergence is None
    assert result.compared == len(onnx.load(str(cnn["optimized"])).graph.node) and result.skipped == 0
    assert result.line().startswith(f"no divergent node: {result.compared} common tensor(s) agree")


def test_exported_vs_optimized_with_nchw_input_feeds_through_the_interface(cnn):
    """--inputs-as-nchw transposes the candidate's input (tf2trt.interface): the feed must be transposed too."""
    from compiler.api import optimize_model
    from compiler.config import OptimizeConfig

    nchw, _ = optimize_model(cnn["exported"], cnn["dir"] / "cnn.nchw.onnx", OptimizeConfig(inputs_as_nchw=("image",)))
    feeds = random_feeds(cnn["exported"], nchw.path)
    assert feeds[0]["image"].shape == (1, 32, 32, 3)  # the reference's (NHWC) interface
    assert localize(cnn["exported"], nchw.path, feeds)
    node = _perturb(nchw.path, cnn["dir"] / "cnn.nchw.bad.onnx", lambda n: n.op_type == "Conv")
    d = localize(cnn["exported"], cnn["dir"] / "cnn.nchw.bad.onnx", feeds).first_divergence
    assert d is not None and d.node == node.name


def test_fp16_passes_fp16_tolerances_and_is_named_under_tight_ones(cnn):
    feeds = random_feeds(cnn["optimized"], cnn["fp16"])
    assert localize(cnn["optimized"], cnn["fp16"], feeds, FP16_TOLERANCES)
    tight = localize(cnn["optimized"], cnn["fp16"], feeds, (1e-5, 1e-5))
    d = tight.first_divergence
    nodes = {n.name: n for n in onnx.load(str(cnn["fp16"])).graph.node}
    assert d is not None and d.node in nodes and nodes[d.node].op_type == d.op
    assert d.max_abs > 1e-5 and (d.atol, d.rtol) == (1e-5, 1e-5)
    # The first float16 tensor diverges; upstream sits the input Cast that to_fp16 inserted.
    assert {s.created_by for s in d.suspects} <= {"export", "to_fp16"}
    assert any(s.created_by == "to_fp16" and s.op == "Cast" for s in d.suspects)


def test_batch_size_one_finds_the_same_node_in_more_batches(cnn):
    feeds = random_feeds(cnn["optimized"], cnn["bad"])
    default = localize(cnn["optimized"], cnn["bad"], feeds)
    single = localize(cnn["optimized"], cnn["bad"], feeds, batch_size=1)
    assert single.first_divergence == default.first_divergence
    assert default.batches == 1 and single.batches == single.compared > 1
    # Batches stop at the first divergent one: nothing after the perturbed Conv was run.
    order = [o for n in onnx.load(str(cnn["bad"])).graph.node for o in n.output]
    assert single.compared == order.index(default.first_divergence.tensor) + 1
    assert localize(cnn["optimized"], cnn["optimized"], feeds, batch_size=5).batches == math.ceil(
        len(order) / 5)


def test_suspects_name_the_pass_that_made_a_renamed_node(exported, tmp_path):
    """einsum_to_matmul gives its MatMuls new output names, which the export lacks: a wrong weight in one is
    first seen downstream, and the MatMul is among the suspects with the pass that made it."""
    from compiler.api import optimize_model

    optimized, _ = optimize_model(exported["einsum"], tmp_path / "einsum.opt.onnx")
    origin = provenance(onnx.load(str(optimized.path)))
    node = _perturb(optimized.path, tmp_path / "einsum.bad.onnx",
                    lambda n: n.op_type == "MatMul" and origin.get(n.name) == "rewrite_tensorrt", factor=1.05)
    result = localize(exported["einsum"], tmp_path / "einsum.bad.onnx",
                      random_feeds(exported["einsum"], tmp_path / "einsum.bad.onnx"))
    d = result.first_divergence
    assert d is not None and result.candidate_only > 0
    assert {"node": node.name, "op": "MatMul", "created_by": "rewrite_tensorrt"} in [s.to_json() for s in d.suspects]
    assert node.name in result.line() and "rewrite_tensorrt" in result.line()


def test_cli_exit_codes_json_and_errors(cnn, capsys):
    code, out, err = run_cli(capsys, "localize", cnn["optimized"], cnn["bad"])
    assert code == 1, err
    assert out.strip().splitlines()[-1].startswith(f"first divergent node: {cnn['node'].name} (Conv")
    code, out, _ = run_cli(capsys, "localize", cnn["optimized"], cnn["bad"], "--json", "--batch-size", "1")
    data = json.loads(out)
    assert code == 1
    assert {"reference", "candidate", "compared", "skipped", "batches", "seconds", "tolerances",
            "first_divergence"} <= set(data)
    assert set(data["first_divergence"]) >= {"node", "op", "created_by", "tensor", "max_abs", "max_rel", "atol",
                                             "rtol", "suspects"}
    assert data["first_divergence"]["node"] == cnn["node"].name and data["batches"] == data["compared"] > 1
    assert data["tolerances"] == {"atol": 1e-5, "rtol": 1e-5}

    code, out, err = run_cli(capsys, "localize", cnn["optimized"], cnn["fp16"], "--atol", "1e-2", "--rtol", "1e-2")
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("no divergent node:")

    code, out, err = run_cli(capsys, "localize", cnn["optimized"], cnn["dir"] / "missing.onnx")
    assert code == ValidationError.exit_code and out == ""
    assert err.count("\n") == 1 and err.startswith("error: validate: localize: candidate") and "does not exist" in err
    code, _, err = run_cli(capsys, "localize", cnn["optimized"], cnn["bad"], "--batch-size", "0")
    assert code == 2 and err.count("\n") == 1


def test_models_without_common_tensors_or_with_other_inputs_are_one_line_errors(tmp_path):
    from onnx import TensorProto, helper

    def model(path, op, out, inp="x"):
        graph = helper.make_graph([helper.make_node(op, [inp], [out], name=f"{op}_node")], "g",
                                  [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [2])],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, [2])])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
        return path

    a, b, c = model(tmp_path / "a.onnx", "Relu", "y"), model(tmp_path / "b.onnx", "Abs", "z"), \
        model(tmp_path / "c.onnx", "Relu", "y", inp="w")
    feeds = [{"x": np.array([-1, 2], np.float32)}]
    with pytest.raises(ValidationError, match="share no comparable tensor"):
        localize(a, b, feeds)
    with pytest.raises(ValidationError, match="inputs differ: reference takes x; candidate takes w"):
        localize(a, c, feeds)
    result = localize(a, model(tmp_path / "a2.onnx", "Abs", "y"), feeds)
    assert result.first_divergence.node == "Abs_node" and result.first_divergence.created_by == "export"
    # A failure inside compile's localization is reported beside the seam failure, never instead of it.
    entry, clause = localize_seam(a, tmp_path / "gone.onnx", {}, None, None, (1e-5, 1e-5))
    assert "does not exist" in entry["error"] and clause.startswith("localizing the first divergent node failed")


BAD_RULE = '''
from passes.rules import Builder, Rule, replace_output


class TanhForgetsDoubling(Rule):
    """Tanh(x) -> 2*Sigmoid(x) - 1: wrong, that is tanh(x/2)."""

    name = "tanh_forgets_doubling"
    op = "Tanh"

    def apply(self, node, graph):
        b = Builder(graph, node, self.name)
        x, y = node.inputs[0], node.outputs[0]
        scaled = b.op("Mul", [b.op("Sigmoid", [x], dtype=x.dtype, shape=x.shape), b.const(2, "float32")],
                      dtype=x.dtype, shape=x.shape)
        replace_output(graph, y, b.op("Sub", [scaled, b.const(1, "float32")], dtype=x.dtype, shape=x.shape))


RULES = [TanhForgetsDoubling()]
'''


def test_compile_names_the_node_a_wrong_rule_made(tmp_path, capsys):
    rules = tmp_path / "bad_rule.py"
    rules.write_text(BAD_RULE)
    out = tmp_path / "m.engine"
    code, _, err = run_cli(capsys, FIXTURES / "multi_io", out, *COMPILABLE["multi_io"], "--rules", rules, "--quiet")
    assert code == ValidationError.exit_code and not out.exists()
    line = next(ln for ln in err.splitlines() if ln.startswith("error:"))
    assert "seam onnx→optimized" in line and "; first divergent node: " in line
    assert "StatefulPartitionedCall/Tanh/tanh_forgets_doubling/Sigmoid" in line and "created by user_rules" in line
    assert line.index("; first divergent node: ") < line.index("; fix: ")
    report = json.loads((tmp_path / "m.engine.report.json").read_text())
    d = report["localization"]["first_divergence"]
    assert d["tensor"] == "StatefulPartitionedCall/Mean:0"  # the first common tensor after the rewritten Tanh
    assert {s["created_by"] for s in d["suspects"]} == {"user_rules", "export"}
    assert {s["op"] for s in d["suspects"] if s["created_by"] == "user_rules"} == {"Sigmoid", "Mul", "Sub"}
    assert report["error"]["message"] == line.removeprefix("error: ")
