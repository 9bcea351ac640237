"""The export seam never hands the passes a graph that is not standard, valid, loadable ONNX."""
from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from compiler.errors import ExportError
from compiler.frontend.export import _verify


def _model(node, in_type=TensorProto.FLOAT, out_shape=(2, 3)):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", in_type, [2, 3])],
                              [helper.make_tensor_value_info("y", in_type, list(out_shape))])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_valid_model_passes():
    _verify(_model(helper.make_node("Relu", ["x"], ["y"])), [])


def test_leftover_tensorflow_op_is_named():
    with pytest.raises(ExportError, match=r"TensorFlow op\(s\): Lgamma \(node 'net/Lgamma'\)"):
        _verify(_model(helper.make_node("Lgamma", ["x"], ["y"], name="net/Lgamma")), [])


def test_contradictory_shapes_fail_the_full_check():
    with pytest.raises(ExportError, match="invalid ONNX model"):
        _verify(_model(helper.make_node("Relu", ["x"], ["y"]), out_shape=(4, 5)), ["an earlier tf2onnx error"])


def test_model_onnxruntime_cannot_load_is_one_clear_line():
    # Valid ONNX (Relu-14 accepts int16) but onnxruntime's CPU provider has no int16 Relu kernel.
    node = helper.make_node("Relu", ["x"], ["y"], name="r")
    with pytest.raises(ExportError, match=r"does not load in onnxruntime: no CPU kernel for Relu-14 \(node 'r'\) "
                                          r"with input type\(s\) int16") as e:
        _verify(_model(node, in_type=TensorProto.INT16), [])
    assert "\n" not in str(e.value) and "ONNXRuntimeError" not in str(e.value)


@pytest.mark.tf
@pytest.mark.parametrize("sigma, refused", [(0.0, False), (0.5, True)])
def test_soft_nms_is_refused_not_silently_made_hard(tmp_path, sigma, refused):
    """tf2onnx 1.17 exports soft-NMS as hard NMS without a word; the export stage must refuse it."""
    import tensorflow as tf

    from compiler.api import export_model

    class Nms(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([16, 4], tf.float32), tf.TensorSpec([16], tf.float32)])
        def serve(self, boxes, scores):
            idx, out_scores = tf.image.non_max_suppression_with_scores(boxes, scores, 8, soft_nms_sigma=sigma)
            return {"selected": idx, "selected_scores": out_scores}

    m = Nms()
    tf.saved_model.save(m, str(tmp_path / "nms"), signatures={"serving_default": m.serve})
    if not refused:
        export_model(tmp_path / "nms", tmp_path / "nms.onnx")
        return
    with pytest.raises(ExportError, match="soft-NMS \\(soft_nms_sigma 0.5\\).*hard NMS"):
        export_model(tmp_path / "nms", tmp_path / "nms.onnx")
    assert not (tmp_path / "nms.onnx").exists()
