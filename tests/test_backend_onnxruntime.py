"""The onnxruntime backend must not change what the graph computes."""
from __future__ import annotations

import numpy as np
import pytest
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


def _conv_model(tmp_path, channels: int = 16):
    """Conv → Relu → MaxPool on NCHW float32: the chain onnxruntime's NCHWc transformer rewrites at level ALL."""
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1, "w")
    b = onnx.numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    shape = [1, channels, 16, 16]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 8, 8])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "conv.onnx"
    onnx.save(model, str(path))
    return path, {"x": rng.standard_normal(shape).astype(np.float32)}


def test_native_build_uses_the_layout_kernels_and_records_what_it_is_tied_to(tmp_path):
    """native: level ALL (onnxruntime's blocked-channel NCHWc kernels), tied to this onnxruntime and CPU;
    portable: EXTENDED, no NCHWc. Both compute what the graph computes."""
    import onnxruntime

    from compiler.config import BuildConfig

    src, feed = _conv_model(tmp_path)
    expected = ort_session(src).run(None, feed)[0]
    native = ort_backend.build(src, tmp_path / "native.engine")  # the default
    portable = ort_backend.build(src, tmp_path / "portable.engine", BuildConfig(ort_build="portable"))
    # the NCHWc transformer's layout conversion nodes (com.microsoft.nchwc ReorderInput/ReorderOutput)
    assert b"ReorderInput" in native.path.read_bytes() and b"ReorderOutput" in native.path.read_bytes()
    assert b"ReorderInput" not in portable.path.read_bytes()
    here = ort_backend.build_record("native")
    assert native.summary["ort_build"] == "native" and native.summary["optimization_level"] == "all"
    assert native.summary["onnxruntime"] == onnxruntime.__version__ and native.summary["isa"] == here["isa"]
    assert "same onnxruntime version" in native.summary["portability"]
    assert portable.summary["ort_build"] == "portable" and portable.summary["optimization_level"] == "extended"
    assert "Pad_Fusion" in native.summary["disabled_optimizers"]
    for art in (native, portable):
        np.testing.assert_allclose(load(art.path).infer({"x": feed["x"]})["y"], expected, atol=1e-5, rtol=1e-5)


def test_native_artifact_is_refused_where_it_was_not_built(tmp_path, monkeypatch, capsys):
    """Built for another CPU (here: one with AVX-512) or another onnxruntime: a one-line RunError that says to
    rebuild or build portable, before anything runs; a portable artifact built there loads."""
    from compiler.config import BuildConfig
    from compiler.errors import RunError
    from tests.conftest import run_cli

    src, feed = _conv_model(tmp_path)
    here = ort_backend.machine_flags()
    monkeypatch.setattr(ort_backend, "machine_flags", lambda: here | {"avx512f", "avx512bw"})
    other_cpu = ort_backend.build(src, tmp_path / "avx512.engine")
    portable = ort_backend.build(src, tmp_path / "portable.engine", BuildConfig(ort_build="portable"))
    monkeypatch.setattr(ort_backend, "machine_flags", lambda: here)
    monkeypatch.setattr(ort_backend, "_ort_version", lambda: "1.0.0")
    other_version = ort_backend.build(src, tmp_path / "old.engine")
    monkeypatch.undo()
    assert other_cpu.summary["isa"] != ort_backend.build_record("native")["isa"]
    for art, why in ((other_cpu, "this CPU lacks avx512bw, avx512f"), (other_version, "onnxruntime 1.0.0")):
        with pytest.raises(RunError) as e:
            load(art.path)
        assert why in e.value.one_line() and "--ort-build portable" in e.value.one_line()
    assert load(portable.path).infer(feed)["y"].shape == (1, 16, 8, 8)
    code, out, err = run_cli(capsys, "run", other_cpu.path)
    assert code == RunError.exit_code and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "native onnxruntime artifact" in err


def test_incompatibility_rules():
    here = {"onnxruntime": "1.23.2", "machine": "x86_64", "isa": ["avx", "avx2", "fma"]}
    native = {"build": "native", **here}
    assert ort_backend.incompatibility(native, here) is None
    assert ort_backend.incompatibility({**native, "isa": ["avx"]}, here) == \
        "this CPU adds avx2, fma against the CPU it was built for"  # a wider ISA: another NCHWc block size
    assert "aarch64" in ort_backend.incompatibility({**native, "machine": "aarch64"}, here)
    assert ort_backend.incompatibility({**native, "onnxruntime": "1.32.0", "isa": []}, here).startswith(
        "it was built for onnxruntime 1.32.0")
    for portable in ({"build": "portable", "onnxruntime": "1.0", "isa": []}, {}):
        assert ort_backend.incompatibility(portable, here) is None


def test_build_subcommand_takes_ort_build(tmp_path, capsys):
    from tests.conftest import run_cli

    src, _ = _conv_model(tmp_path)
    code, out, err = run_cli(capsys, "build", src, tmp_path / "p.engine", "--ort-build", "portable",
                             "--backend", "onnxruntime")
    assert code == 0, err
    assert "onnxruntime portable build (level extended;" in out and "runs on any CPU" in out
    code, out, err = run_cli(capsys, "build", src, tmp_path / "n.engine", "--backend", "onnxruntime")
    assert code == 0 and "onnxruntime native build (level all;" in out, err


def test_int8_build_says_it_is_for_accuracy_not_speed(tmp_path):
    """A Q/DQ graph on the onnxruntime backend: the engine summary says plainly that int8 does not pay off here;
    a float graph's does not."""
    src, feed = _conv_model(tmp_path)
    model = onnx.load(str(src))
    scale = onnx.numpy_helper.from_array(np.array(0.05, np.float32), "s")
    zero = onnx.numpy_helper.from_array(np.array(0, np.int8), "z")
    model.graph.initializer.extend([scale, zero])
    model.graph.node[0].input[0] = "xdq"
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]))
    model.graph.node.insert(1, helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xdq"]))
    qdq = tmp_path / "qdq.onnx"
    onnx.save(model, str(qdq))
    art = ort_backend.build(qdq, tmp_path / "qdq.engine")
    assert art.summary["precision_notice"] == ort_backend.INT8_NOTICE
    assert "not speed" in art.summary["precision_notice"] and "--backend openvino" in art.summary["precision_notice"]
    assert "precision_notice" not in ort_backend.build(src, tmp_path / "fp32.engine").summary
    assert load(art.path).infer(feed)["y"].shape == (1, 16, 8, 8)
