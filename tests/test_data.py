"""compiler.data: every sample source, the casts and checks on each feed, the digest, Polygraphy use."""
from __future__ import annotations

import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from compiler.artifacts import TensorSpec
from compiler.data import GENERATOR_CAP, Samples, load_samples
from compiler.errors import ConfigError, ValidationError

X = TensorSpec("x", "float32", (None, 3))
IDS = TensorSpec("ids", "int32", (None, 4))
ONE = (X,)
TWO = (X, IDS)
SHAPES = {"x": (2, 3), "ids": (2, 4)}


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text and "fix:" in text
    return text


def write_module(tmp_path, body: str, name: str = "gen.py") -> str:
    path = tmp_path / name
    path.write_text("import numpy as np\n\n" + textwrap.dedent(body))
    return str(path)


# --- random -------------------------------------------------------------------------------------------

def test_random_default_is_seeded_and_in_range():
    inputs = (X, IDS, TensorSpec("m", "bool", (2,)))
    a = load_samples(None, inputs, SHAPES)
    b = load_samples("random", inputs, SHAPES)
    c = load_samples(None, inputs, SHAPES, seed=1)
    assert a.random and len(a) == 8 and a.source == "8 random samples (seed 0)"
    assert a.digest == b.digest and a.digest != c.digest
    feed = a.feeds[0]
    assert list(feed) == ["x", "ids", "m"]
    assert feed["x"].dtype == np.float32 and feed["x"].shape == (2, 3)
    assert feed["ids"].dtype == np.int32 and feed["ids"].shape == (2, 4) and feed["m"].dtype == np.bool_
    allx = np.stack([f["x"] for f in a])
    assert allx.min() >= -1 and allx.max() <= 1
    ids = np.stack([f["ids"] for f in a])
    assert ids.min() >= 0 and ids.max() <= 8


def test_random_count_and_limit():
    assert len(load_samples(None, ONE, SHAPES, random_count=3)) == 3
    s = load_samples(None, ONE, SHAPES, random_count=5, limit=2)
    assert len(s) == 2 and s.source == "2 random samples (seed 0)"


def test_random_needs_a_shape_for_dynamic_inputs():
    with pytest.raises(ValidationError) as err:
        load_samples(None, ONE, {}, what="validation", error=ValidationError)
    assert "'x'" in one_line(err) and "--input-shapes" in str(err.value)


def test_string_input_is_refused():
    with pytest.raises(ConfigError) as err:
        load_samples(None, (TensorSpec("s", "string", (None,)),), {"s": (1,)})
    assert "'s'" in one_line(err) and "string" in str(err.value)


# --- directory ----------------------------------------------------------------------------------------

def test_directory_of_npy_sorted_with_batch_axis_added(tmp_path):
    for i in (2, 0, 1):
        np.save(tmp_path / f"{i:03d}.npy", np.full((3,), i, np.float64))  # no batch axis, float64
    (tmp_path / "notes.txt").write_text("ignored")
    s = load_samples(str(tmp_path), ONE, SHAPES)
    assert not s.random and len(s) == 3 and "(.npy files)" in s.source and s.source.startswith("3 samples from")
    assert [f["x"][0, 0] for f in s] == [0, 1, 2]
    assert all(f["x"].shape == (1, 3) and f["x"].dtype == np.float32 for f in s)


def test_directory_of_npz_multi_input_and_limit(tmp_path):
    for i in range(4):
        np.savez(tmp_path / f"s{i}.npz", x=np.ones((2, 3), np.float32) * i, ids=np.full((2, 4), i, np.int64))
    s = load_samples(str(tmp_path), TWO, SHAPES, limit=2)
    assert len(s) == 2 and s.source.startswith("2 of 4 samples from") and "(.npz files)" in s.source
    assert s.feeds[1]["ids"].dtype == np.int32 and s.feeds[1]["ids"][0, 0] == 1


def test_directory_without_samples(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ConfigError) as err:
        load_samples(str(tmp_path), ONE, SHAPES)
    assert f"directory '{tmp_path}' holds no .npy or .npz files" in one_line(err)


def test_directory_npy_needs_single_input_model(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((1, 3), np.float32))
    with pytest.raises(ValidationError) as err:
        load_samples(str(tmp_path), TWO, SHAPES, what="validation", error=ValidationError)
    text = one_line(err)
    assert "a.npy" in text and "2 inputs" in text and "validation" in text and "savez" in text


def test_unreadable_and_object_files(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ConfigError) as err:
        load_samples(str(tmp_path / "bad.npy"), ONE, SHAPES)
    assert "bad.npy" in one_line(err)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError) as err:
        load_samples(str(tmp_path / "obj.npy"), ONE, SHAPES)
    assert "obj.npy" in one_line(err)


# --- single .npz / .npy file --------------------------------------------------------------------------

def test_npz_with_sample_axis(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.random.rand(5, 2, 3), ids=np.arange(40).reshape(5, 2, 4))
    s = load_samples(str(path), TWO, SHAPES)
    assert len(s) == 5 and s.source == f"5 samples from {path}"
    assert s.feeds[4]["x"].shape == (2, 3) and s.feeds[4]["ids"][0, 0] == 32
    assert len(load_samples(str(path), TWO, SHAPES, limit=3)) == 3


def test_npy_split_into_batches_dynamic_batch_allows_short_last(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.arange(15, dtype=np.float32).reshape(5, 3))
    s = load_samples(str(path), ONE, {"x": (2, 3)})
    assert [f["x"].shape for f in s] == [(2, 3), (2, 3), (1, 3)]
    assert s.feeds[2]["x"][0, 0] == 12


def test_split_with_static_batch_must_divide(tmp_path):
    path = tmp_path / "data.npy"
    static = (TensorSpec("x", "float32", (2, 3)),)
    np.save(path, np.zeros((4, 3), np.float32))
    assert len(load_samples(str(path), static, {"x": (2, 3)})) == 2
    np.save(path, np.zeros((5, 3), np.float32))
    with pytest.raises(ConfigError) as err:
        load_samples(str(path), static, {"x": (2, 3)})
    text = one_line(err)
    assert "data.npy" in text and "5 rows" in text and "batches of 2" in text


def test_npz_counts_must_agree_and_not_be_empty(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((3, 2, 3), np.float32), ids=np.zeros((2, 2, 4), np.int32))
    with pytest.raises(ConfigError) as err:
        load_samples(str(path), TWO, SHAPES)
    assert "data.npz" in one_line(err) and "3 for 'x'" in str(err.value) and "2 for 'ids'" in str(err.value)
    np.savez(path, x=np.zeros((0, 2, 3), np.float32))
    with pytest.raises(ConfigError) as err:
        load_samples(str(path), ONE, SHAPES)
    assert "no samples" in one_line(err)
    np.savez(path)
    with pytest.raises(ConfigError) as err:
        load_samples(str(path), ONE, SHAPES)
    assert "lacks input(s) 'x'" in one_line(err)


def test_npz_wrong_rank(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((3,), np.float32))
    with pytest.raises(ConfigError) as err:
        load_samples(str(path), ONE, SHAPES)
    text = one_line(err)
    assert "data.npz" in text and "[3]" in text and "[?, 3]" in text


def test_npy_file_needs_single_input_model(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ConfigError) as err:
        load_samples(str(path), TWO, SHAPES)
    assert "data.npy" in one_line(err) and "x, ids" in str(err.value)


# --- names, dtypes, shapes ----------------------------------------------------------------------------

def test_unknown_and_missing_inputs(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((1, 2, 3), np.float32), ids=np.zeros((1, 2, 4), np.int32), y=np.zeros(1))
    with pytest.raises(ValidationError) as err:
        load_samples(str(path), TWO, SHAPES, error=ValidationError)
    text = one_line(err)
    assert "data.npz" in text and "'y'" in text and "inputs are: x, ids" in text
    np.savez(path, x=np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValidationError) as err:
        load_samples(str(path), TWO, SHAPES, error=ValidationError)
    assert "lacks input(s) 'ids'" in one_line(err)


def test_dtype_casts(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.full((1, 2, 3), 0.5, np.float64), ids=np.full((1, 2, 4), 7, np.int64))
    feed = load_samples(str(path), TWO, SHAPES).feeds[0]
    assert feed["x"].dtype == np.float32 and feed["ids"].dtype == np.int32 and feed["ids"][0, 0] == 7
    np.savez(path, x=np.zeros((1, 2, 3), np.float16), ids=np.full((1, 2, 4), 7, np.uint8))
    feed = load_samples(str(path), TWO, SHAPES).feeds[0]
    assert feed["x"].dtype == np.float32 and feed["ids"].dtype == np.int32


def test_int_out_of_range(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((2, 2, 3), np.float32), ids=np.array([np.zeros((2, 4)), np.full((2, 4), 2**40)],
                                                                    np.int64))
    with pytest.raises(ConfigError) as err:
        load_samples(str(path), TWO, SHAPES)
    text = one_line(err)
    assert "sample 1 of" in text and "'ids'" in text and "int32" in text and str(2**40) in text


@pytest.mark.parametrize("data, spec, found", [
    (np.zeros((1, 2, 4), np.float32), IDS, "float32"),
    (np.zeros((1, 2, 3), np.int64), X, "int64"),
    (np.zeros((1, 2, 4), np.bool_), IDS, "bool"),
    (np.full((1, 2, 3), "a"), X, "string"),
])
def test_dtype_mismatch(tmp_path, data, spec, found):
    path = tmp_path / "data.npz"
    np.savez(path, **{spec.name: data})
    with pytest.raises(ConfigError) as err:
        load_samples(str(path), (spec,), SHAPES)
    assert f"has dtype {found} but input '{spec.name}' is {spec.dtype}" in one_line(err)
    assert "sample 0 of" in str(err.value)


def test_static_dim_mismatch(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((1, 4), np.float32))
    with pytest.raises(ConfigError) as err:
        load_samples(str(tmp_path), ONE, SHAPES)
    text = one_line(err)
    assert "a.npy" in text and "[1, 4]" in text and "needs [?, 3]" in text


# --- generator ----------------------------------------------------------------------------------------

def test_generator_of_dicts(tmp_path):
    ref = write_module(tmp_path, """
        def make():
            for i in range(3):
                yield {"x": np.full((2, 3), i, np.float64), "ids": np.full((2, 4), i)}
        """) + ":make"
    s = load_samples(ref, TWO, SHAPES)
    assert len(s) == 3 and s.source == f"3 samples from {ref}" and not s.random
    assert s.feeds[2]["x"].dtype == np.float32 and s.feeds[2]["ids"].dtype == np.int32


def test_generator_of_tuples_and_tensor_likes(tmp_path):
    ref = write_module(tmp_path, """
        class Tensor:  # what a TensorFlow EagerTensor offers
            def __init__(self, a):
                self.a = a
            def numpy(self):
                return self.a

        def make():
            return [(Tensor(np.zeros((2, 3), np.float32)), np.ones((2, 4), np.int32))] * 2
        """) + ":make"
    s = load_samples(ref, TWO, SHAPES)
    assert len(s) == 2 and s.feeds[0]["ids"][0, 0] == 1


def test_generator_of_bare_arrays_reusing_a_buffer(tmp_path):
    ref = write_module(tmp_path, """
        def make():
            buf = np.zeros((2, 3), np.float32)
            for i in range(3):
                buf[:] = i
                yield buf
        """) + ":make"
    s = load_samples(ref, ONE, SHAPES)
    assert [f["x"][0, 0] for f in s] == [0, 1, 2]


def test_infinite_generator_limit_and_cap(tmp_path):
    ref = write_module(tmp_path, """
        def make():
            while True:
                yield np.zeros((1, 3), np.float32)
        """) + ":make"
    assert len(load_samples(ref, ONE, SHAPES, limit=5)) == 5
    s = load_samples(ref, ONE, SHAPES)
    assert len(s) == GENERATOR_CAP and f"capped at {GENERATOR_CAP}" in s.source


def test_generator_raising(tmp_path):
    ref = write_module(tmp_path, """
        def make():
            yield np.zeros((1, 3), np.float32)
            raise RuntimeError("disk on fire\\nsecond line")
        """) + ":make"
    with pytest.raises(ValidationError) as err:
        load_samples(ref, ONE, SHAPES, error=ValidationError)
    text = one_line(err)
    assert f"{ref}" in text and "RuntimeError: disk on fire" in text and "second line" not in text


def test_generator_import_and_lookup_errors(tmp_path):
    broken = write_module(tmp_path, "raise ImportError('no tensorflow here')\n", "broken.py")
    with pytest.raises(ConfigError) as err:
        load_samples(broken + ":make", ONE, SHAPES)
    assert f"{broken}:make" in one_line(err) and "ImportError: no tensorflow here" in str(err.value)
    ok = write_module(tmp_path, "value = 3\n", "ok.py")
    for ref, needle in [(ok + ":make", "defines no 'make'"), (ok + ":value", "not a function"),
                        (str(tmp_path / "missing.py") + ":make", "does not exist")]:
        with pytest.raises(ConfigError) as err:
            load_samples(ref, ONE, SHAPES)
        assert ref in one_line(err) and needle in str(err.value)


def test_generator_item_errors_name_the_item(tmp_path):
    ref = write_module(tmp_path, """
        def empty():
            return iter(())

        def pairs():
            yield np.zeros((1, 3), np.float32)
            yield np.zeros((1, 3), np.float32)

        def wrong_count():
            yield (np.zeros((1, 3), np.float32),)

        def not_iterable():
            return 3
        """)
    cases = [("empty", ONE, "yielded no samples"), ("pairs", TWO, "item 0 of"),
             ("wrong_count", TWO, "holds 1 arrays but the model has 2 inputs"),
             ("not_iterable", ONE, "not an iterable")]
    for func, inputs, needle in cases:
        with pytest.raises(ConfigError) as err:
            load_samples(f"{ref}:{func}", inputs, SHAPES)
        assert f"{ref}:{func}" in one_line(err) and needle in str(err.value)
    bad = write_module(tmp_path, """
        def make():
            yield np.zeros((1, 3), np.float32)
            yield {"x": np.zeros((1, 5), np.float32)}
        """, "bad.py") + ":make"
    with pytest.raises(ConfigError) as err:
        load_samples(bad, ONE, SHAPES)
    assert f"item 1 of {bad}" in one_line(err) and "[1, 5]" in str(err.value)


# --- spec forms, digest, Polygraphy -------------------------------------------------------------------

def test_unknown_spec_forms(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "g.py").write_text("")
    for spec, needle in [(str(tmp_path / "nope"), "nothing found"), (str(tmp_path / "a.txt"), "not a .npy"),
                         (str(tmp_path / "g.py"), "names no function")]:
        with pytest.raises(ValidationError) as err:
            load_samples(spec, ONE, SHAPES, what="validation", error=ValidationError)
        text = one_line(err)
        assert spec in text and needle in text and text.startswith("validate: validation")


def test_digest_tracks_values_shapes_dtypes_and_order():
    def digest(*feeds):
        import compiler.data as data
        return data._digest(list(feeds))

    a, b = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    base = digest({"x": a}, {"x": b})
    assert base == digest({"x": a.copy()}, {"x": b.copy()})
    assert base != digest({"x": b}, {"x": a})
    assert base != digest({"x": a}, {"x": b.reshape(3, 2)})
    assert base != digest({"x": a}, {"x": b.astype(np.float64)})
    c = b.copy()
    c[1, 2] = 2
    assert base != digest({"x": a}, {"x": c})
    assert base != digest({"y": a}, {"x": b})


def test_digest_equal_across_sources(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.random((3, 2, 3)).astype(np.float32)
    np.save(tmp_path / "all.npy", data)
    (tmp_path / "dir").mkdir()
    for i in range(3):
        np.save(tmp_path / "dir" / f"{i}.npy", data[i])
    a = load_samples(str(tmp_path / "all.npy"), ONE, SHAPES)
    b = load_samples(str(tmp_path / "dir"), ONE, SHAPES)
    assert isinstance(a, Samples) and a.digest == b.digest and len(a.digest) == 64
    assert "digest=" in repr(a)


def test_polygraphy_comparator_runs_samples(tmp_path):
    from polygraphy.comparator import Comparator

    from compiler.validate import onnx_runner, quiet_polygraphy

    quiet_polygraphy()
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    samples = load_samples(None, ONE, {"x": (2, 3)}, random_count=3)
    results = Comparator.run([onnx_runner(model.SerializeToString(), "ort")], data_loader=samples)
    outs = results["ort"]
    assert len(outs) == 3
    for feed, out in zip(samples, outs):
        np.testing.assert_array_equal(out["y"], np.maximum(feed["x"], 0))
