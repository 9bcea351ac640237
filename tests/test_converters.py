"""Each converter for an op tf2onnx lacks: exported through our front end, numerics against TensorFlow."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ort_run

pytestmark = pytest.mark.tf


def _export_fn(tmp_path, fn, spec):
    """Save a one-function tf.Module as a SavedModel and export it with our front end."""
    import tensorflow as tf

    from compiler.api import export_model

    class M(tf.Module):
        @tf.function(input_signature=[spec])
        def serve(self, x):
            return {"y": fn(x)}

    m = M()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.serve})
    return export_model(tmp_path / "sm", tmp_path / "m.onnx").path, m.serve


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-6), ("float64", 1e-6)])  # float64 runs Erf in float32
def test_erfc_matches_tensorflow(tmp_path, dtype, atol):
    import onnx
    import tensorflow as tf

    path, fn = _export_fn(tmp_path, tf.math.erfc, tf.TensorSpec([None, 7], dtype, name="x"))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Erf" in ops and "Erfc" not in ops
    x = np.linspace(-6, 6, 7 * 9, dtype=dtype).reshape(9, 7)
    np.testing.assert_allclose(ort_run(path, {"x": x})["y"], fn(x=tf.constant(x))["y"].numpy(), atol=atol, rtol=0)


def _keras_gelu_file(path):
    """Dense layers with activation="gelu": Keras' exact (erf-based) GELU."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16,), name="features")
    x = keras.layers.Dense(8, activation="gelu")(inp)
    keras.Model(inp, keras.layers.Dense(3, name="scores")(x)).save(str(path))
    return path


def test_keras_file_with_exact_gelu_compiles(tmp_path, capsys):
    """A .keras file goes straight in; Keras' exact GELU needs the Erfc converter."""
    import json

    from tests.conftest import run_cli

    model = _keras_gelu_file(tmp_path / "gelu.keras")
    out = tmp_path / "gelu.engine"
    code, stdout, stderr = run_cli(capsys, model, out)
    assert code == 0, stderr
    report = json.loads((tmp_path / "gelu.engine.report.json").read_text())
    assert "Keras file exported" in report["stages"]["inspect"]["note"]
    assert report["validation"][0]["seam"] == "tf→onnx" and report["validation"][0]["passed"]
    code, stdout, _ = run_cli(capsys, "inspect", model)
    assert code == 0 and "features: float32 [?, 16]" in stdout


def test_unreadable_keras_file(tmp_path, capsys):
    from tests.conftest import run_cli

    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip")
    code, _, stderr = run_cli(capsys, bad, tmp_path / "x.engine")
    assert code == 3 and stderr.strip().splitlines()[-1].startswith("error: inspect: Keras")
    assert not (tmp_path / "x.engine").exists()


def test_xla_compiled_grouped_conv_is_inlined_and_converted(tmp_path, capsys):
    """Keras 3 runs Conv2D(groups>1) through an XLA-only, no-inline function (ConvNeXt's depthwise conv).

    Without inlining, tf2onnx leaves a StatefulPartitionedCall in the graph and the export fails.
    """
    import json

    import keras
    import onnx

    from tests.conftest import run_cli

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 8), name="image")
    keras.Model(inp, keras.layers.Conv2D(8, 7, padding="same", groups=8)(inp)).export(
        str(tmp_path / "grouped"), verbose=False)
    out = tmp_path / "g.engine"
    code, _, stderr = run_cli(capsys, tmp_path / "grouped", out, "--keep-intermediates", tmp_path / "inter")
    assert code == 0, stderr
    convs = [n for n in onnx.load(str(tmp_path / "inter" / "model.onnx")).graph.node if n.op_type == "Conv"]
    assert len(convs) == 1 and {a.name: a.i for a in convs[0].attribute}["group"] == 8
    report = json.loads((tmp_path / "g.engine.report.json").read_text())
    assert all(s["passed"] for s in report["validation"])


def test_keras2_tf_keras_saved_model_compiles(tmp_path, capsys):
    """Keras 2 (the tf-keras package) SavedModels, as TF-TRT users have them, are a supported input."""
    import json

    import tf_keras

    from tests.conftest import run_cli

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Input((8, 8, 3), name="img"),
                                 tf_keras.layers.Conv2D(4, 3, activation="relu"),
                                 tf_keras.layers.BatchNormalization(), tf_keras.layers.GlobalAveragePooling2D(),
                                 tf_keras.layers.Dense(5, activation="gelu")])
    model.save(str(tmp_path / "k2"), save_format="tf")
    code, _, stderr = run_cli(capsys, tmp_path / "k2", tmp_path / "k2.engine")
    assert code == 0, stderr
    report = json.loads((tmp_path / "k2.engine.report.json").read_text())
    assert report["status"] == "ok" and report["validation"][0]["seam"] == "tf→onnx"


def _signbit_bits(x):
    """Keras 3's own lowering of ops.signbit on floats: the sign bit through a bitcast."""
    import tensorflow as tf

    return tf.less(tf.bitwise.bitwise_and(tf.bitcast(x, tf.int32), tf.constant(tf.int32.min)), 0)


@pytest.mark.parametrize("opset", [17, 18])
def test_sign_bit_through_bitcast_matches_tensorflow_without_bitcast(tmp_path, opset):
    """bitwise_and(bitcast(x, int32), INT_MIN) < 0 → a float sign test that keeps −0.0 negative."""
    import onnx
    import tensorflow as tf

    from compiler.api import export_model
    from compiler.config import ExportConfig

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
        def serve(self, x):
            return {"y": _signbit_bits(x)}

    m = M()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.serve})
    path = export_model(tmp_path / "sm", tmp_path / "m.onnx", ExportConfig(opset=opset)).path
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"Bitcast", "BitwiseAnd"}, ops
    x = np.array([[-1.5, -0.0, 0.0, 2.0, -np.inf, np.inf]] * 2, np.float32)
    got = ort_run(path, {"x": x})["y"]
    np.testing.assert_array_equal(got, m.serve(x=tf.constant(x))["y"].numpy())
    assert got[0].tolist() == [True, True, False, False, True, False]


def test_keras_argmax_on_floats_exports_and_matches(tmp_path):
    """keras.ops.argmax on floats (its −0.0 fix goes through signbit) converts and picks the same index."""
    import keras
    import tensorflow as tf

    from compiler.api import export_model

    keras.utils.set_random_seed(0)
    x_in = keras.Input((5,), name="x")
    model = keras.Model(x_in, keras.ops.argmax(x_in, axis=-1))
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    path = export_model(tmp_path / "sm", tmp_path / "m.onnx").path
    x = np.array([[0.0, -0.0, -1.0, -2.0, -3.0], [-0.0, 0.0, -1, -1, -1], [1, 3, 3, 2, 0]], np.float32)
    want = tf.saved_model.load(str(tmp_path / "sm")).serve(tf.constant(x)).numpy()
    np.testing.assert_array_equal(next(iter(ort_run(path, {"x": x}).values())), want)


def test_bitcast_that_reads_the_bits_names_the_pattern(tmp_path):
    """A bitcast whose value is used as a number has no ONNX form: the error says which use, no --opset hint."""
    import tensorflow as tf

    from compiler.errors import ExportError

    with pytest.raises(ExportError) as e:
        _export_fn(tmp_path, lambda x: tf.bitcast(x, tf.int32) + 1, tf.TensorSpec([None, 3], tf.float32, name="x"))
    text = e.value.one_line()
    assert "Bitcast float32→int32" in text and "reads more than the sign bit" in text, text
    assert "--opset" not in text, text
