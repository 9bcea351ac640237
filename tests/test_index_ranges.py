"""Integer inputs that index a table get the table's range (compiler/index_ranges.py); a rank-1 input's axis
is its batch; a seam side that cannot run is a failed seam that names the node (compiler/seam_errors.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.artifacts import TensorSpec
from compiler.config import ValidateConfig
from compiler.errors import InspectError
from compiler.index_ranges import index_ranges, merged_ranges, with_index_ranges
from compiler.seam_errors import failing_node
from compiler.validate import input_ranges, resolve_shapes


def _model(nodes, inputs, inits=(), outputs=("y",)):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                   for o in outputs], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _table(name, rows, cols=4):
    return numpy_helper.from_array(np.zeros((rows, cols), np.float32), name)


def test_segment_ids_through_cast_get_the_small_table_and_uses_intersect():
    """BERT-like: ids index a 2-row table through Cast/Unsqueeze, and a 5-row one: the range is [0, 1]."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT32, [None, 8])
    nodes = [helper.make_node("Cast", ["ids"], ["ids64"], to=TensorProto.INT64),
             helper.make_node("Gather", ["seg", "ids64"], ["a"]),
             helper.make_node("Gather", ["big", "ids"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    ranges = index_ranges(_model(nodes, [ids], [_table("seg", 2), _table("big", 5)]))
    assert (ranges["ids"].low, ranges["ids"].high) == (0, 1)
    assert "2 entries" in ranges["ids"].uses[0]


def test_keras_negative_index_wrap_is_followed_and_axis_counts():
    """where(i < 0, i + n, i) lowered to Add/Mul, then Gather along axis 1 of a [3, 6] table."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [None])
    n = numpy_helper.from_array(np.array(6, np.int64), "n")
    nodes = [helper.make_node("Add", ["ids", "n"], ["wrapped"]),
             helper.make_node("Gather", ["t", "wrapped"], ["y"], axis=1)]
    r = index_ranges(_model(nodes, [ids], [_table("t", 3, 6), n]))["ids"]
    assert (r.low, r.high) == (0, 5)


def test_gathernd_onehot_and_non_index_inputs():
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, [None, 2])
    hot = helper.make_tensor_value_info("hot", TensorProto.INT64, [None])
    other = helper.make_tensor_value_info("count", TensorProto.INT64, [None])
    depth = numpy_helper.from_array(np.array(3, np.int64), "depth")
    values = numpy_helper.from_array(np.array([0, 1], np.float32), "values")
    nodes = [helper.make_node("GatherND", ["t", "idx"], ["g"]),
             helper.make_node("OneHot", ["hot", "depth", "values"], ["y"]),
             helper.make_node("Cast", ["count"], ["c"], to=TensorProto.FLOAT)]
    ranges = index_ranges(_model(nodes, [idx, hot, other], [numpy_helper.from_array(np.zeros((4, 7), np.float32),
                                                                                     "t"), depth, values]))
    assert (ranges["idx"].high, ranges["hot"].high) == (3, 2) and "count" not in ranges


def test_val_range_wins_over_inferred_ranges():
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [None])
    inferred = index_ranges(_model([helper.make_node("Gather", ["t", "ids"], ["y"])], [ids], [_table("t", 2)]))
    assert merged_ranges(inferred, {}) == {"ids": (0, 1)}
    assert merged_ranges(inferred, {"ids": (0, 0)}) == {"ids": (0, 0)}
    assert merged_ranges(inferred, {"": (1, 1)}) == {"": (1, 1)}
    cfg = with_index_ranges(ValidateConfig(), inferred)
    assert input_ranges((TensorSpec("ids", "int64", (None,)),), cfg.val_ranges)["ids"] == (0, 1)


def test_rank1_input_whose_only_axis_is_the_batch():
    """[?] is a batch of scalars (ids, strings): no --input-shapes needed, no garbled hint."""
    assert resolve_shapes((TensorSpec("text", "int64", (None,)),), {}, 3) == {"text": (3,)}
    with pytest.raises(InspectError) as e:
        resolve_shapes((TensorSpec("x", "float32", (None,), unknown_rank=True),), {}, 1)
    assert "no declared rank" in e.value.one_line() and "N set" not in e.value.one_line()


def test_failing_node_from_tensorflow_and_onnxruntime_messages():
    tf_text = ("Graph execution error:\n\nDetected at node bert/segment_embedding/GatherV2 defined at (most recent "
               "call last):\nindices[0,0] = 4 is not in [0, 2)\n\t [[{{node bert/segment_embedding/GatherV2}}]]")
    ort_text = ("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Gather node. "
                "Name:'seg/Gather' Status Message: indices element out of data bounds")
    assert failing_node(tf_text) == "bert/segment_embedding/GatherV2"
    assert failing_node(ort_text) == "seg/Gather"
    assert failing_node("something else") is None


def _embedding_onnx(path):
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 4])
    table = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 4), "table")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"], name="segment_gather")], "g",
                              [ids], [y], initializer=[table])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def test_compile_uses_the_table_range_and_a_runtime_error_is_a_failed_seam(tmp_path, capsys):
    import json

    from tests.conftest import run_cli

    model = _embedding_onnx(tmp_path / "emb.onnx")
    code, _, stderr = run_cli(capsys, model, tmp_path / "ok.engine")
    assert code == 0, stderr
    report = json.loads((tmp_path / "ok.engine.report.json").read_text())
    assert report["inputs"][0]["index_range"]["high"] == 1 and report["inputs"][0]["index_range"]["used"]
    code, _, stderr = run_cli(capsys, model, tmp_path / "bad.engine", "--val-range", "ids:0,8")
    line = stderr.strip().splitlines()[-1]
    assert code == 7, stderr
    assert line.startswith("error: validate: seam ") and "'segment_gather'" in line and "--val-range" in line, line
    assert not (tmp_path / "bad.engine").exists()
    code, stdout, _ = run_cli(capsys, "inspect", model)
    assert code == 0 and "ids: [0, 1] (indexes 'segment_gather' (Gather, 2 entries))" in stdout
