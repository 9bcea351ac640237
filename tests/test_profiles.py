"""Optimization profiles: parsing, TF-TRT's derivation strategies, checks, and the choice at run time (pure)."""
from __future__ import annotations

import pytest

from compiler.artifacts import TensorSpec
from compiler.errors import ConfigError
from compiler.profiles import (ShapeProfile, check_profiles, choose_profile, derive_profiles, parse_profiles,
                               resolve_profiles)

IMAGE = TensorSpec("image", "float32", (None, 3, None, None))  # dynamic batch, height, width
TOKENS = TensorSpec("tokens", "int64", (None, None))
STATIC = TensorSpec("scale", "float32", (1, 4))


def shapes(image, tokens):
    return {"image": image, "tokens": tokens}


SAMPLES = [shapes((1, 3, 32, 32), (1, 7)), shapes((4, 3, 64, 48), (4, 12)), shapes((1, 3, 32, 32), (1, 7)),
           shapes((2, 3, 16, 96), (2, 3))]


def test_range_spans_every_sample_with_opt_at_max():
    (p,) = derive_profiles((IMAGE, TOKENS, STATIC), SAMPLES, "range")
    assert p.min == {"image": (1, 3, 16, 32), "tokens": (1, 3)}
    assert p.max == {"image": (4, 3, 64, 96), "tokens": (4, 12)}
    assert p.opt == p.max  # TF-TRT's Range: opt = max
    assert "scale" not in p.min  # static inputs need no profile entry
    assert all(p.holds(s) for s in SAMPLES)


def test_optimal_is_one_pinned_profile_per_distinct_shape_set():
    profiles = derive_profiles((IMAGE, TOKENS), SAMPLES, "optimal")
    assert len(profiles) == 3  # the repeated first sample counts once
    assert [p.min["tokens"] for p in profiles] == [(1, 7), (4, 12), (2, 3)]  # in the order first seen
    for p, sample in zip(profiles, [SAMPLES[0], SAMPLES[1], SAMPLES[3]]):
        assert p.min == p.opt == p.max == sample


def test_range_optimal_puts_the_pinned_profiles_first_so_they_win_at_run_time():
    profiles = derive_profiles((IMAGE, TOKENS), SAMPLES, "range+optimal")
    assert len(profiles) == 4
    assert profiles[:3] == derive_profiles((IMAGE, TOKENS), SAMPLES, "optimal")
    assert profiles[3] == derive_profiles((IMAGE, TOKENS), SAMPLES, "range")[0]
    assert choose_profile(profiles, SAMPLES[1]) == 1  # a build shape gets its own profile
    between = shapes((3, 3, 40, 40), (3, 5))
    assert choose_profile(profiles, between) == 3  # anything between still runs, on the range profile
    assert choose_profile(profiles, shapes((5, 3, 32, 32), (1, 7))) is None  # beyond max: nowhere


def test_one_sample_gives_one_profile_for_every_strategy():
    one = [shapes((2, 3, 8, 8), (2, 5))]
    for strategy in ("range", "optimal", "range+optimal"):
        (p,) = derive_profiles((IMAGE, TOKENS), one, strategy)
        assert p.min == p.opt == p.max == one[0]


def test_static_model_needs_no_profile():
    assert derive_profiles((STATIC,), [{"scale": (1, 4)}], "range") == ()
    assert resolve_profiles((STATIC,), (), None, None, {"scale": (1, 4)}) == ((), "static shapes: no profile needed")


@pytest.mark.parametrize("samples, match", [
    ([shapes((1, 3, 8, 8), (1, 5)), {"image": (1, 3, 8), "tokens": (1, 5)}], "rank 3"),
    ([shapes((1, 4, 8, 8), (1, 5))], "dimension 1 is fixed at 3"),
    ([{"image": (1, 3, 8, 8)}], "no input 'tokens'"),
    ([shapes((0, 3, 8, 8), (1, 5))], "empty dimension"),
    ([], "no samples"),
])
def test_derivation_refuses_samples_the_model_cannot_take(samples, match):
    with pytest.raises(ConfigError, match=match):
        derive_profiles((IMAGE, TOKENS), samples, "range")


def test_mixed_ranks_for_an_input_of_unknown_rank_are_refused():
    anything = TensorSpec("x", "float32", (None,) * 2)
    with pytest.raises(ConfigError, match="rank"):
        derive_profiles((anything,), [{"x": (1, 2)}, {"x": (1, 2, 3)}], "range")


def test_unknown_strategy():
    with pytest.raises(ConfigError, match="unknown profile strategy"):
        derive_profiles((IMAGE,), [{"image": (1, 3, 8, 8)}], "implicit-batch")


def test_parse_explicit_profiles_repeated_flags_and_default_opt():
    profiles = parse_profiles(["image:1x3x32x32", "image:8x3x64x64"], [],
                              ["image:4x3x64x64", "image:16x3x128x128"])
    assert len(profiles) == 2
    assert profiles[0].opt == profiles[0].max == {"image": (4, 3, 64, 64)}
    assert profiles[1].min == {"image": (8, 3, 64, 64)}
    assert parse_profiles([], [], []) == ()


@pytest.mark.parametrize("mins, opts, maxs, match", [
    (["x:1x2"], [], [], "as many --min-shapes as --max-shapes"),
    (["x:1x2"], ["x:1x2", "x:1x2"], ["x:2x2"], "as many"),
    (["x:1x2"], [], ["y:2x2"], "different inputs"),
    (["x:4x2"], [], ["x:2x2"], "min <= opt <= max"),
    (["x:1x2"], ["x:3x2"], ["x:2x2"], "min <= opt <= max"),
    (["x:1x2"], [], ["x:2x2x2"], "ranks 2/3/3"),
    (["x:1xq"], [], ["x:2x2"], "not positive integers"),
])
def test_parse_explicit_profiles_refusals(mins, opts, maxs, match):
    with pytest.raises(ConfigError, match=match):
        parse_profiles(mins, opts, maxs)


def test_check_profiles_against_the_model():
    good = parse_profiles(["image:1x3x8x8,tokens:1x1"], [], ["image:4x3x64x64,tokens:4x32"])
    check_profiles((IMAGE, TOKENS, STATIC), good, shapes((2, 3, 16, 16), (2, 8)))
    with pytest.raises(ConfigError, match="'imag', which is not an input.*did you mean 'image'"):
        check_profiles((IMAGE,), parse_profiles(["imag:1x3x8x8"], [], ["imag:2x3x8x8"]))
    with pytest.raises(ConfigError, match="no shapes for dynamic input.*tokens"):
        check_profiles((IMAGE, TOKENS), parse_profiles(["image:1x3x8x8"], [], ["image:2x3x8x8"]))
    with pytest.raises(ConfigError, match="profile 0 opt: input .image. dimension 1 is fixed at 3"):
        check_profiles((IMAGE,), parse_profiles(["image:1x3x8x8"], [], ["image:2x4x8x8"]))
    with pytest.raises(ConfigError, match="no optimization profile holds the shapes validation runs with"):
        check_profiles((IMAGE, TOKENS), good, shapes((8, 3, 16, 16), (2, 8)))


def test_default_profile_is_pinned_to_the_validation_shapes():
    (p,), how = resolve_profiles((IMAGE, STATIC), (), None, None, {"image": (2, 3, 32, 32), "scale": (1, 4)})
    assert p.min == p.opt == p.max == {"image": (2, 3, 32, 32)} and "pinned" in how
    with pytest.raises(ConfigError, match="dynamic shape.*--min-shapes"):
        resolve_profiles((IMAGE,), (), None, None, None)
    with pytest.raises(ConfigError, match="needs sample inputs"):
        resolve_profiles((IMAGE,), (), "range", [], None)


def test_map_moves_a_profile_into_an_engines_transposed_layout():
    from compiler.interface import Interface

    nhwc = ShapeProfile({"image": (1, 32, 32, 3)}, {"image": (4, 64, 64, 3)}, {"image": (8, 64, 64, 3)})
    nchw = nhwc.map(Interface(inputs={"image": {"perm": [0, 3, 1, 2]}}).candidate_shape)
    assert nchw.min == {"image": (1, 3, 32, 32)} and nchw.max == {"image": (8, 3, 64, 64)}
    assert nchw.to_json()["image"]["opt"] == [4, 3, 64, 64]
