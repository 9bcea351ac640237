"""compiler.tftrt: TF-TRT's documented examples run with one changed import, on real SavedModels; the saved
directory loads and reproduces TensorFlow; TF-TRT's errors; the lean deploy runtime's pure parts.

The examples are TF-TRT's documentation (tf.experimental.tensorrt.Converter) as written. The harness fills in
what the documentation leaves to the user: ``my_dir`` (the fixture, linked into a working directory),
``output_saved_model_dir``, ``num_runs`` and the ``...`` of ``inp1, inp2 = ...`` (``next_inputs()``), and
spells ``tf.experimental.tensorrt.`` as ``trt.`` (the module the import line binds). For the one-input
fixture the two placeholder lines read ``inp1 = next_inputs()`` and ``yield inp1``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from compiler import deploy
from compiler import tftrt as trt
from compiler.errors import RunError
from tests.conftest import FIXTURES, ROOT, golden

pytestmark = pytest.mark.tf

EXAMPLE_1 = '''
params = tf.experimental.tensorrt.ConversionParams(
    precision_mode='FP16')
converter = tf.experimental.tensorrt.Converter(
    input_saved_model_dir="my_dir", conversion_params=params)
converter.convert()
converter.save(output_saved_model_dir)
'''

EXAMPLE_2 = '''
params = tf.experimental.tensorrt.ConversionParams(
    precision_mode='FP16',
    # Set this to a large enough number so it can cache all the engines.
    maximum_cached_engines=16)
converter = tf.experimental.tensorrt.Converter(
    input_saved_model_dir="my_dir", conversion_params=params)
converter.convert()

# Define a generator function that yields input data, and use it to execute
# the graph to build TRT engines.
def my_input_fn():
  for _ in range(num_runs):
    inp1, inp2 = ...
    yield inp1, inp2

converter.build(input_fn=my_input_fn)  # Generate corresponding TRT engines
converter.save(output_saved_model_dir)  # Generated engines will be saved.
'''

EXAMPLE_3 = '''
params = tf.experimental.tensorrt.ConversionParams(
    precision_mode='INT8',
    # Currently only one INT8 engine is supported in this mode.
    maximum_cached_engines=1,
    use_calibration=True)
converter = tf.experimental.tensorrt.Converter(
    input_saved_model_dir="my_dir", conversion_params=params)

# Define a generator function that yields input data, and run INT8
# calibration with the data. All input data should have the same shape.
# At the end of convert(), the calibration stats (e.g. range information)
# will be saved and can be used to generate more TRT engines with different
# shapes. Also, one TRT engine will be generated (with the same shape as
# the calibration data) for save later.
def my_calibration_input_fn():
  for _ in range(num_runs):
    inp1, inp2 = ...
    yield inp1, inp2

converter.convert(calibration_input_fn=my_calibration_input_fn)

# (Optional) Generate more TRT engines offline (same as the previous
# option), to avoid the cost of generating them during inference.
def my_input_fn():
  for _ in range(num_runs):
    inp1, inp2 = ...
    yield inp1, inp2
converter.build(input_fn=my_input_fn)

# Save the TRT engine and the engines.
converter.save(output_saved_model_dir)
'''

# Option 4 (dynamic shape) is prose in the documentation: option 2 with the converter created with
# use_dynamic_shape=True and a profile strategy.
EXAMPLE_4 = EXAMPLE_2.replace('input_saved_model_dir="my_dir", conversion_params=params)',
                              'input_saved_model_dir="my_dir", conversion_params=params,\n'
                              '    use_dynamic_shape=True, dynamic_shape_profile_strategy=STRATEGY)')

TOLERANCE = {"FP32": (1e-4, 1e-3), "FP16": (1e-2, 1e-2), "INT8": (5e-2, 5e-2)}


class Inputs:
    """Inputs for a fixture, in TensorFlow's positional order; build runs vary the batch (and multi_io's
    sequence) and alternate numpy arrays and TF tensors; calibration runs keep one shape."""

    SHAPES = {"cnn_nhwc": [((1, 32, 32, 3),), ((2, 32, 32, 3),), ((4, 32, 32, 3),)],
              "multi_io": [((1, 1), (1, 5, 8)), ((2, 1), (2, 5, 8)), ((4, 1), (4, 7, 8))]}

    def __init__(self, fixture: str, fixed_first: int = 0):
        self.fixture, self.fixed_first, self.count = fixture, fixed_first, 0
        self.rng = np.random.default_rng(0)

    def __call__(self):
        import tensorflow as tf

        shapes = self.SHAPES[self.fixture][1 if self.count < self.fixed_first else self.count % 3]
        draw = self.rng.standard_normal if self.fixture == "multi_io" else lambda s: self.rng.uniform(0, 1, s)
        arrays = [draw(s).astype(np.float32) for s in shapes]  # the goldens' distributions
        if self.count % 2:
            arrays = [tf.constant(a) for a in arrays]
        self.count += 1
        return arrays[0] if len(arrays) == 1 else tuple(arrays)


def run_example(code: str, fixture: str, workdir, strategy: str | None = None, calibration_fixed: bool = False):
    """Run a documentation example on ``fixture``; returns (namespace, output directory)."""
    code = code.replace("tf.experimental.tensorrt.", "trt.")
    if fixture == "cnn_nhwc":
        code = code.replace("inp1, inp2 = ...", "inp1 = next_inputs()").replace("yield inp1, inp2", "yield inp1")
    else:
        code = code.replace("inp1, inp2 = ...", "inp1, inp2 = next_inputs()")
    workdir.mkdir(parents=True)
    (workdir / "my_dir").symlink_to(FIXTURES / fixture, target_is_directory=True)
    out = workdir / "converted"
    namespace = {"trt": trt, "output_saved_model_dir": str(out), "num_runs": 3, "STRATEGY": strategy,
                 # "All input data should have the same shape" for calibration: its num_runs come first
                 "next_inputs": Inputs(fixture, fixed_first=3 if calibration_fixed else 0)}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(compile(code, f"<TF-TRT example on {fixture}>", "exec"), namespace)
    finally:
        os.chdir(cwd)
    namespace["warnings"] = caught
    return namespace, out


def check_outputs(model, fixture: str, precision: str):
    """The loaded directory's outputs on the fixture's golden inputs (recorded by TensorFlow)."""
    ins, outs = golden(fixture)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = model.signatures["serving_default"](**ins)
    assert set(got) == set(outs)
    atol, rtol = TOLERANCE[precision]
    for name, want in outs.items():
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got[name].numpy(), want, atol=atol, rtol=rtol, err_msg=name)
        elif precision == "FP32":
            np.testing.assert_array_equal(got[name], want)
        else:  # an argmax may tip where lowered precision moved close logits: it must follow our own logits
            np.testing.assert_array_equal(got[name], np.argmax(got["logits"], axis=-1))
    return caught


def with_precision(code: str, precision: str) -> str:
    return code.replace("precision_mode='FP16'", f"precision_mode='{precision}'")


EXAMPLES = {  # (example, fixture, precision): FP32 and FP16 each with and without engines, on both fixtures
    "no-engines-fp32-cnn": (EXAMPLE_1, "cnn_nhwc", "FP32"),
    "no-engines-fp16-multi": (EXAMPLE_1, "multi_io", "FP16"),
    "engines-fp16-cnn": (EXAMPLE_2, "cnn_nhwc", "FP16"),
    "engines-fp32-multi": (EXAMPLE_2, "multi_io", "FP32"),
    "int8-cnn": (EXAMPLE_3, "cnn_nhwc", "INT8"),
    "int8-multi": (EXAMPLE_3, "multi_io", "INT8"),
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each example run once for the module: name -> (namespace, output directory)."""
    cache = {}

    def get(name: str):
        if name not in cache:
            code, fixture, precision = EXAMPLES[name]
            cache[name] = run_example(with_precision(code, precision), fixture,
                                      tmp_path_factory.mktemp("tftrt") / name,
                                      calibration_fixed=precision == "INT8")
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_documented_example_saves_a_directory_that_reproduces_tensorflow(converted, name):
    namespace, out = converted(name)
    _, fixture, precision = EXAMPLES[name]
    manifest = json.loads((out / deploy.MANIFEST).read_text())
    built = "build(" in EXAMPLES[name][0]
    assert len(manifest["engines"]) == (1 if built else 0)
    assert (out / "graph.onnx").is_file() and (out / "report.json").is_file() and (out / "native").is_dir()
    assert (out / "calibration.json").is_file() == (precision == "INT8")
    if built:
        assert (out / manifest["engines"][0]["file"]).is_file()
        validation = json.loads((out / "report.json").read_text())["validation"]
        floats = [k for k, v in golden(fixture)[1].items() if v.dtype.kind == "f"]
        assert validation["passed"] or (precision != "FP32" and all(validation["outputs"][k]["passed"]
                                                                    for k in floats))
    model = trt.load(out)
    caught = check_outputs(model, fixture, precision)
    # Without pre-built engines the first call builds one (allow_build_at_runtime defaults to True).
    assert any("building a new engine" in str(w.message) for w in caught) == (not built)


def test_readme_example_runs(tmp_path, monkeypatch):
    import re

    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index("## Coming from TF-TRT"):], re.S).group(1)
    (tmp_path / "fixtures").symlink_to(FIXTURES, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    lines = []
    exec(compile(code, "<README: Coming from TF-TRT>", "exec"), {"print": lines.append})
    assert lines[-1] == (2, 10) and (tmp_path / "cnn_converted" / deploy.MANIFEST).is_file()


def test_converted_function_runs_before_and_after_build(tmp_path):
    ins, outs = golden("multi_io")
    converter = trt.TrtGraphConverterV2(input_saved_model_dir=str(FIXTURES / "multi_io"))
    func = converter.convert()
    before = func(**ins)
    np.testing.assert_allclose(before["logits"], outs["logits"], atol=1e-4, rtol=1e-3)
    converter.build(lambda: iter([{"x": ins["x"], "scale": ins["scale"]}]))  # a dict, as TF-TRT allowed
    after = func(ins["scale"], ins["x"])  # positional: TensorFlow's order, by name
    np.testing.assert_allclose(after["logits"].numpy(), outs["logits"], atol=1e-4, rtol=1e-3)
    with pytest.raises(NotImplementedError, match="already called"):
        converter.build(lambda: iter([ins]))
    lines = []
    converter.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "engine_0" in text and "MatMul" in text and "Profile 0: scale: 1x1 / 2x1 / 2x1; x: 1x5x8 / 2x5x8 / 2x5x8" in text  # implicit batch
    assert "Total number of engines: 1" in text
    converter.save(tmp_path / "no_plans", save_gpu_specific_engines=False)
    manifest = json.loads((tmp_path / "no_plans" / deploy.MANIFEST).read_text())
    assert manifest["engines"][0]["file"] is None and not (tmp_path / "no_plans" / "engines").exists()
    model = trt.load(tmp_path / "no_plans")  # the engine is rebuilt from the saved graph
    assert model.engines[0].origin == "rebuilt at load"
    np.testing.assert_allclose(model(**ins)["logits"], outs["logits"], atol=1e-4, rtol=1e-3)
    with pytest.raises(RunError, match="save_gpu_specific_engines=False"):
        deploy.load(tmp_path / "no_plans")  # the lean runtime builds nothing


@pytest.mark.parametrize("strategy", trt.supported_profile_strategies())
def test_dynamic_shape_strategies(tmp_path, strategy):
    namespace, out = run_example(with_precision(EXAMPLE_4, "FP32"), "multi_io", tmp_path / "w", strategy)
    profiles = json.loads((out / deploy.MANIFEST).read_text())["engines"][0]["profiles"]
    x = [(p["x"]["min"], p["x"]["max"]) for p in profiles]
    expected = {"Range": [([1, 5, 8], [4, 7, 8])],
                "Optimal": [([1, 5, 8], [1, 5, 8]), ([2, 5, 8], [2, 5, 8]), ([4, 7, 8], [4, 7, 8])],
                "Range+Optimal": [([1, 5, 8], [1, 5, 8]), ([2, 5, 8], [2, 5, 8]), ([4, 7, 8], [4, 7, 8]),
                                  ([1, 5, 8], [4, 7, 8])],
                "ImplicitBatchModeCompatible": [([1, 5, 8], [1, 5, 8]), ([1, 5, 8], [2, 5, 8]),
                                                ([1, 7, 8], [4, 7, 8])]}
    assert x == expected[strategy]
    check_outputs(trt.load(out), "multi_io", "FP32")


def test_dynamic_shape_on_a_one_input_model_and_shapes_outside_the_profiles(tmp_path):
    namespace, out = run_example(with_precision(EXAMPLE_4, "FP32"), "cnn_nhwc", tmp_path / "w", "Range")
    image = np.random.default_rng(1).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)  # beyond batch 4
    import tensorflow as tf

    want = tf.saved_model.load(str(FIXTURES / "cnn_nhwc")).signatures["serving_default"](image=image)
    want = {k: v.numpy() for k, v in want.items()}
    # maximum_cached_engines=16 and allow_build_at_runtime: a second engine is built for the new shape.
    model = trt.load(out)
    with pytest.warns(trt.TftrtWarning, match="building a new engine"):
        got = model.signatures["serving_default"](image=tf.constant(image))
    np.testing.assert_allclose(got["output_0"], want["output_0"], atol=1e-4, rtol=1e-3)
    assert [e.origin for e in model.engines] == ["saved", "built at run time"]
    # allow_build_at_runtime=False (or a full engine cache): the original SavedModel runs in TensorFlow.
    for change in ({"allow_build_at_runtime": False}, {"maximum_cached_engines": 1}):
        copy = tmp_path / f"copy_{len(change)}_{next(iter(change))}"
        shutil.copytree(out, copy)
        manifest = json.loads((copy / deploy.MANIFEST).read_text()) | change
        (copy / deploy.MANIFEST).write_text(json.dumps(manifest))
        model = trt.load(copy)
        with pytest.warns(trt.TftrtWarning, match="running the original SavedModel in TensorFlow"):
            got = model.signatures["serving_default"](image=image)
        np.testing.assert_allclose(got["output_0"], want["output_0"], atol=1e-5, rtol=1e-5)
        assert len(model.engines) == 1
    # The same directory through compiler.runtime.load and the lean runtime.
    from compiler.runtime import load, run

    runner = load(out)
    assert runner.format == deploy.FORMAT and runner.backend == "onnxruntime"
    ins, outs = golden("cnn_nhwc")
    np.testing.assert_allclose(run(runner, ins).outputs["output_0"], outs["output_0"], atol=1e-4, rtol=1e-3)
    lean = deploy.load(out)
    assert type(lean.engines[0].runner).__name__ == "OrtDeployRunner"
    np.testing.assert_allclose(lean(image=ins["image"])["output_0"], outs["output_0"], atol=1e-4, rtol=1e-3)


def test_int8_in_dynamic_shape_mode_calibrates_at_build_and_refuses_to_save_before(tmp_path):
    rng = np.random.default_rng(0)
    data = [rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32) for _ in range(4)]
    converter = trt.Converter(input_saved_model_dir=str(FIXTURES / "cnn_nhwc"), precision_mode="INT8",
                              use_dynamic_shape=True, dynamic_shape_profile_strategy="Optimal")
    converter.convert(calibration_input_fn=lambda: iter(data))
    with pytest.raises(RuntimeError, match="calibration has to be built before saving"):
        converter.save(tmp_path / "out")
    converter.build(lambda: ([d] for d in data[:2]))  # a list per item
    converter.save(tmp_path / "out")
    check_outputs(trt.load(tmp_path / "out"), "cnn_nhwc", "INT8")
    assert json.loads((tmp_path / "out" / "report.json").read_text())["precision"]["mode"] == "int8"


def test_int8_without_build_saves_an_engine_at_the_calibration_shape(tmp_path):
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((2, 1)).astype(np.float32), rng.standard_normal((2, 5, 8)).astype(np.float32))
            for _ in range(4)]
    converter = trt.Converter(input_saved_model_dir=str(FIXTURES / "multi_io"), precision_mode="INT8",
                              max_workspace_size_bytes=np.int64(1 << 28))
    converter.convert(calibration_input_fn=lambda: iter(data))
    converter.save(tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / deploy.MANIFEST).read_text())
    assert manifest["workspace_mib"] == 256
    assert [p["x"] for p in manifest["engines"][0]["profiles"]] == [{"min": [1, 5, 8], "opt": [2, 5, 8],
                                                                     "max": [2, 5, 8]}]
    check_outputs(trt.load(tmp_path / "out"), "multi_io", "INT8")


def test_int8_without_calibration_needs_a_quantized_graph():
    converter = trt.Converter(input_saved_model_dir=str(FIXTURES / "cnn_nhwc"), precision_mode="INT8",
                              use_calibration=False)
    with pytest.raises(ValueError, match="quantization-aware training"):
        converter.convert()


# --------------------------------------------------------------------------- TF-TRT's checks (no conversion)

def test_params_and_names():
    assert trt.TrtPrecisionMode.supported_precision_modes() == ["FP32", "FP16", "INT8", "fp32", "fp16", "int8"]
    assert trt.supported_profile_strategies() == ["Range", "Optimal", "Range+Optimal", "ImplicitBatchModeCompatible"]
    assert trt.Converter is trt.TrtGraphConverterV2 and trt.ConversionParams is trt.TrtConversionParams
    p = trt.DEFAULT_TRT_CONVERSION_PARAMS._replace(precision_mode=trt.TrtPrecisionMode.FP16, is_dynamic_op=True)
    assert (p.precision_mode, p.maximum_cached_engines, p.use_calibration, p.allow_build_at_runtime) == \
        ("FP16", 1, True, True)
    assert trt.DEFAULT_TRT_CONVERSION_PARAMS.max_workspace_size_bytes == trt.DEFAULT_TRT_MAX_WORKSPACE_SIZE_BYTES


MODEL = str(FIXTURES / "cnn_nhwc")


@pytest.mark.parametrize("kwargs, match", [
    ({"precision_mode": "FP64"}, "precision mode 'FP64' is not supported"),
    ({"minimum_segment_size": 0}, "minimum segment size should be positive or -1"),
    ({"conversion_params": trt.TrtConversionParams(is_dynamic_op=False)}, "is_dynamic_op=False is not supported"),
    ({"use_dynamic_shape": True, "dynamic_shape_profile_strategy": "Fastest"}, "profile_strategy 'Fastest'"),
    ({"maximum_cached_engines": 0}, "maximum_cached_engines must be a positive integer"),
    ({"max_workspace_size_bytes": -1}, "max_workspace_size_bytes must be a positive integer"),
])
def test_invalid_combinations_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        trt.Converter(input_saved_model_dir=MODEL, **kwargs)


def test_calibration_function_errors_and_call_order():
    with pytest.raises(ValueError, match="Should specify calibration_input_fn"):
        trt.Converter(input_saved_model_dir=MODEL, precision_mode="int8").convert()
    with pytest.raises(ValueError, match="Should not specify calibration_input_fn"):
        trt.Converter(input_saved_model_dir=MODEL).convert(calibration_input_fn=lambda: iter([]))
    fresh = trt.Converter(input_saved_model_dir=MODEL)
    with pytest.raises(RuntimeError, match="input_fn is None"):
        fresh.build(None)
    with pytest.raises(RuntimeError, match="convert\\(\\) before build"):
        fresh.build(lambda: iter([]))
    with pytest.raises(RuntimeError, match="convert\\(\\) before save"):
        fresh.save("unused")
    with pytest.raises(RuntimeError, match="before calling TrtGraphConverterV2.convert"):
        fresh.summary()
    with pytest.raises(ValueError, match="input_saved_model_dir is required"):
        trt.Converter()


def test_options_without_meaning_here_are_explained_once(converted):
    with pytest.warns(trt.TftrtWarning, match="minimum_segment_size=10 has no effect here: the whole graph"):
        trt.Converter(input_saved_model_dir=MODEL, minimum_segment_size=10)
    with pytest.warns(trt.TftrtWarning, match="max_batch_size=8 has no effect here"):
        trt.Converter(input_saved_model_dir=MODEL, conversion_params=trt.TrtConversionParams(max_batch_size=8))
    with pytest.warns(trt.TftrtWarning, match="ignored without use_dynamic_shape=True"):
        trt.Converter(input_saved_model_dir=MODEL, dynamic_shape_profile_strategy="Optimal")
    with pytest.warns(trt.TftrtWarning, match="keyword\\(s\\) precision_mode are ignored"):
        trt.Converter(input_saved_model_dir=MODEL, precision_mode="FP16", conversion_params=trt.ConversionParams())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trt.Converter(input_saved_model_dir=MODEL)  # defaults warn about nothing
    namespace, _ = converted("no-engines-fp32-cnn")
    converter = namespace["converter"]
    with pytest.raises(ValueError, match="Minimum: 160"):
        converter.summary(line_length=100)
    with pytest.raises(RuntimeError, match="input_fn is None"):
        converter.build(input_fn=None)
    with pytest.raises(ValueError, match="holds 2 value"):
        converter.build(lambda: iter([(np.zeros((1, 32, 32, 3), np.float32),) * 2]))
    with pytest.raises(ValueError, match="overlaps the input SavedModel"):
        converter.save(FIXTURES / "cnn_nhwc" / "converted")


# --------------------------------------------------------------------------- imports

def _modules_after(statement: str) -> set:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_importing_tftrt_does_not_import_tensorflow():
    loaded = _modules_after("from compiler import tftrt as trt; trt.Converter, trt.TrtPrecisionMode.FP16")
    assert "tensorflow" not in loaded and "tf2onnx" not in loaded


def test_deploy_runtime_imports_neither_tensorflow_tf2onnx_nor_polygraphy():
    loaded = _modules_after("import compiler.deploy as d; d.choose_profile([], {})")
    assert not {"tensorflow", "tf2onnx", "polygraphy", "onnx", "onnxruntime"} & loaded


# --------------------------------------------------------------------------- deploy: pure parts

def test_binding_layout_puts_inputs_first_and_refuses_what_numpy_cannot_hold():
    tensors = [{"name": "out", "mode": "output", "dtype": "float32", "shape": [-1, 10]},
               {"name": "image", "mode": "input", "dtype": "float16", "shape": [-1, 32, 32, 3]},
               {"name": "ids", "mode": "input", "dtype": "int32", "shape": [4]}]
    layout = deploy.binding_layout(tensors)
    assert [(b.name, b.is_input) for b in layout] == [("image", True), ("ids", True), ("out", False)]
    with pytest.raises(RunError, match="bf16"):
        deploy.binding_layout([{"name": "x", "mode": "input", "dtype": "bf16", "shape": [1]}])
    with pytest.raises(RunError, match="two IO tensors named 'x'"):
        deploy.binding_layout([{"name": "x", "mode": "input", "dtype": "float32", "shape": [1]}] * 2)


def test_profile_choice_is_the_first_that_holds():
    exact = {"x": {"min": [2, 5], "opt": [2, 5], "max": [2, 5]}}
    span = {"x": {"min": [1, 5], "opt": [4, 7], "max": [4, 7]}}
    assert deploy.choose_profile([exact, span], {"x": (2, 5)}) == 0
    assert deploy.choose_profile([exact, span], {"x": (3, 6)}) == 1
    assert deploy.choose_profile([exact, span], {"x": (8, 5)}) is None
    assert deploy.choose_profile([exact], {"x": (2, 5, 1)}) is None  # rank
    assert deploy.choose_profile([], {"x": (9,)}) == 0  # a static engine has no profiles
    assert deploy.runtime_profile({"x": (8, 5)}, implicit_batch=True) == {"x": {"min": [1, 5], "opt": [8, 5],
                                                                              "max": [8, 5]}}
    from compiler.artifacts import TensorSpec

    fixed = (TensorSpec("x", "float32", (8, None)),)  # a static batch stays as it is
    assert deploy.runtime_profile({"x": (8, 5)}, True, fixed)["x"]["min"] == [8, 5]


def test_buffer_sizes():
    layout = deploy.binding_layout([{"name": "x", "mode": "input", "dtype": "float16", "shape": [-1, 3]},
                                    {"name": "n", "mode": "output", "dtype": "int64", "shape": [-1]}])
    assert deploy.buffer_sizes(layout, {"x": (4, 3), "n": (0,)}) == {"x": 24, "n": 1}
    with pytest.raises(RunError, match="no shape for tensor"):
        deploy.buffer_sizes(layout, {"x": (4, 3)})
    with pytest.raises(RunError, match="concrete shape"):
        deploy.buffer_sizes(layout, {"x": (-1, 3), "n": (1,)})


def test_call_binding_and_feed_conformance():
    from compiler.artifacts import TensorSpec

    assert deploy.bind_arguments(("scale", "x"), (1,), {"x": 2}) == {"scale": 1, "x": 2}
    with pytest.raises(TypeError, match="has no input 'y'"):
        deploy.bind_arguments(("x",), (), {"y": 1})
    with pytest.raises(TypeError, match="missing input"):
        deploy.bind_arguments(("scale", "x"), (1,), {})
    spec = (TensorSpec("x", "float32", (None, 3)),)
    fed = deploy.conform({"x": np.ones((2, 3), np.float64)}, spec)
    assert fed["x"].dtype == np.float32
    with pytest.raises(TypeError, match="dtype int64"):
        deploy.conform({"x": np.ones((2, 3), np.int64)}, spec)
    with pytest.raises(ValueError, match="shape \\[2, 4\\]"):
        deploy.conform({"x": np.ones((2, 4), np.float32)}, spec)
    assert isinstance(deploy.as_output(np.ones(2)).numpy(), np.ndarray)


def _tensorrt_runtime() -> tuple[bool, str]:
    import importlib.util

    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    return (not missing, f"{' and '.join(missing)} not installed (the deploy extra on a GPU machine)")


@pytest.mark.tensorrt
@pytest.mark.skipif(not _tensorrt_runtime()[0], reason=_tensorrt_runtime()[1])
def test_lean_runner_runs_a_saved_tensorrt_plan(tmp_path):
    converter = trt.Converter(input_saved_model_dir=MODEL, use_dynamic_shape=True)
    converter.convert()
    converter.build(lambda: iter([np.zeros((1, 32, 32, 3), np.float32), np.zeros((4, 32, 32, 3), np.float32)]))
    converter.save(tmp_path / "out")
    model = deploy.load(tmp_path / "out")
    assert type(model.engines[0].runner).__name__ == "TrtDeployRunner"
    ins, outs = golden("cnn_nhwc")
    np.testing.assert_allclose(model(**ins)["output_0"], outs["output_0"], atol=1e-4, rtol=1e-3)
