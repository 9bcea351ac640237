"""The onnxruntime backend must not change what the graph computes."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from compiler.backends import onnxruntime as ort_backend
from compiler.runtime import load, ort_session


def test_zero_pad_before_maxpool_is_not_fused(tmp_path):
    """Regression: onnxruntime's Pad_Fusion turns Pad(0)+MaxPool into MaxPool(pads), which pads with -inf.

    On all-negative inputs the zero border must win the max; with the fusion it would not.
    """
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
             helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2])]
    graph = helper.make_graph(nodes, "padpool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3])],
                              [onnx.numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src = tmp_path / "padpool.onnx"
    onnx.save(model, str(src))
    art = ort_backend.build(src, tmp_path / "padpool.engine")
    x = -np.arange(1, 37, dtype=np.float32).reshape(1, 1, 6, 6)  # all negative
    sess = ort_session(src)
    expected = sess.run(None, {"x": x})[0]
    assert expected[0, 0, 0, 0] == 0.0  # the zero padding is the max at the border
    np.testing.assert_array_equal(load(art.path).infer({"x": x})["y"], expected)


def test_u8_weight_shift_is_refused_without_vnni():
    """The int8 weight shift (QDQS8ToU8Transformer) stays only where the CPU has VNNI; elsewhere its fused
    kernels disagree with the Q/DQ graph (see the backend's comment), and unreadable flags count as no VNNI."""
    avx2 = ort_backend.cpu_flags("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert avx2 == {"fpu", "sse2", "avx2", "fma"}
    assert "QDQS8ToU8Transformer" in ort_backend.disabled_optimizers(avx2)
    assert "QDQS8ToU8Transformer" in ort_backend.disabled_optimizers(frozenset())
    for vnni in ("avx512_vnni", "avx_vnni", "amx_int8"):
        assert ort_backend.disabled_optimizers(avx2 | {vnni}) == ort_backend.DISABLED_OPTIMIZERS
    assert "Pad_Fusion" in ort_backend.disabled_optimizers(avx2 | {"amx_int8"})
