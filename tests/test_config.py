import pytest

from compiler.artifacts import TensorSpec
from compiler.config import parse_shapes
from compiler.errors import ConfigError, InspectError
from compiler.validate import error_stats, merge_specs, resolve_shapes


def test_parse_shapes():
    assert parse_shapes("image:1x224x224x3, mask:1x8") == {"image": (1, 224, 224, 3), "mask": (1, 8)}
    assert parse_shapes("serving_default_x:0:2x3") == {"serving_default_x:0": (2, 3)}
    assert parse_shapes("s:") == {"s": ()}
    assert parse_shapes(None) == {} and parse_shapes(" ") == {}


@pytest.mark.parametrize("spec, match", [("image1x2", "no 'name:'"), ("x:1xax3", "'a'"), ("x:1x0", "'0'"),
                                         ("x:1x-1", "'-1'"), ("x:1,x:2", "twice"), (":1x2", "no 'name:'")])
def test_parse_shapes_errors(spec, match):
    with pytest.raises(ConfigError, match=match) as e:
        parse_shapes(spec)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_resolve_shapes_batch_and_errors():
    img = TensorSpec("image", "float32", (None, 32, 32, 3))
    seq = TensorSpec("x", "float32", (None, None, 8))
    assert resolve_shapes((img,), {}, batch=4) == {"image": (4, 32, 32, 3)}
    assert resolve_shapes((seq,), {"x": (2, 5, 8)}) == {"x": (2, 5, 8)}
    with pytest.raises(InspectError, match=r"--input-shapes x:1xNx8"):
        resolve_shapes((seq,), {})
    with pytest.raises(ConfigError, match="axis 1 is fixed at 32"):
        resolve_shapes((img,), {"image": (1, 64, 32, 3)})
    with pytest.raises(ConfigError, match="which is not an input"):
        resolve_shapes((img,), {"imag": (1, 32, 32, 3)})


def test_merge_specs_takes_static_dims_from_candidate():
    ref = (TensorSpec("x", "float32", (None, None, 8)),)
    cand = (TensorSpec("x", "float32", (2, 5, 8)),)
    assert merge_specs(ref, cand)[0].shape == (2, 5, 8)


def test_error_stats():
    s = error_stats([1.0, 2.0, 0.0], [1.0, 2.5, 0.0])
    assert s["max_abs"] == 0.5 and s["max_rel"] == 0.25 and s["mean_abs"] == pytest.approx(0.5 / 3)


def test_choose_signature_rules():
    from compiler.frontend.savedmodel import choose_signature

    assert choose_signature(["serve", "serving_default"], None) == "serving_default"
    assert choose_signature(["predict"], None) == "predict"
    assert choose_signature(["a", "b"], "b") == "b"
    with pytest.raises(InspectError, match="several signatures.*--signature a"):
        choose_signature(["a", "b"], None)
    with pytest.raises(InspectError, match="no serving signatures"):
        choose_signature([], None)
    with pytest.raises(InspectError, match="'c' not found; available signatures: a, b"):
        choose_signature(["a", "b"], "c")


def test_ort_build_setting():
    from compiler.config import ORT_BUILDS, BuildConfig

    assert BuildConfig().ort_build == "native" and ORT_BUILDS == ("native", "portable")
    with pytest.raises(ConfigError, match="unknown onnxruntime build 'fast'") as e:
        BuildConfig(ort_build="fast")
    assert "native, portable" in e.value.one_line()
