"""Graph-surgery passes over onnx-graphsurgeon, and the default pipeline.

Every pass is exported here explicitly; nothing registers itself on import.
"""
from __future__ import annotations

from .cleanup_casts import CleanupCasts
from .cleanup_toposort import CleanupToposort
from .collapse_tensordot import CollapseTensordot
from .eliminate_transposes import EliminateTransposes
from .fold_constants import FoldConstants
from .freeze_input_shapes import FreezeInputShapes
from .fuse_into_conv import FuseIntoConv
from .infer_shapes import InferShapes
from .infra import (PROVENANCE_KEY, Pass, PassBug, PassError, PassManager, PassRecord, PassResult,
                    fingerprint, provenance)
from .layout_io import LayoutIO
from .precision import QuantizeInt8, ToBf16, ToFp16
from .rewrite_tensorrt import RewriteTensorRT
from .user_rules import UserRules

ALL_PASSES: dict[str, type[Pass]] = {
    cls.name: cls for cls in (FreezeInputShapes, LayoutIO, InferShapes, FoldConstants, UserRules,
                             RewriteTensorRT, CollapseTensordot, EliminateTransposes, FuseIntoConv,
                             CleanupToposort)
}

# The precision stage's passes (compiler/precision.py runs them after the pipeline, with --precision):
# not in ALL_PASSES, since they need settings and calibrated ranges that --passes cannot give.
PRECISION_PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in (ToFp16, ToBf16, QuantizeInt8,
                                                                        CleanupCasts)}


def default_pipeline(*, input_shapes: dict | None = None, inputs_as_nchw: tuple[str, ...] = (),
                     outputs_as_nchw: tuple[str, ...] = (), rules: tuple = ()) -> list[Pass]:
    """The default order, and why it is this order; each pass gets its settings here. The first two run once,
    before the manager repeats the others to a fixed point (``Pass.once``)."""
    return [
        # Static input shapes first: every later pass sees the shapes the engine will run with.
        FreezeInputShapes(input_shapes),
        # The interface layout next: the user's --input-shapes are in the model's own layout, so they
        # are frozen first; every later pass sees the NCHW interface and its compensating Transposes.
        LayoutIO(inputs_as_nchw, outputs_as_nchw),
        # Shapes and dtypes on every tensor before folding: fold_constants can only turn
        # Shape(x) into a constant when x's shape is known.
        InferShapes(),
        # Evaluate constant subgraphs (weights arithmetic, shape arithmetic) into initializers.
        FoldConstants(),
        # The user's rules see the folded graph before ours, so they can claim a pattern first
        # (e.g. a subgraph that becomes a plugin node).
        UserRules(rules),
        # Replace what TensorRT's parser rejects; rules read constant K, roi, indices and static shapes,
        # which only exist after folding.
        RewriteTensorRT(),
        # tf2onnx's Tensordot (Reshape → MatMul → Reshape, Keras Dense on rank > 2) as one broadcasting
        # MatMul, before eliminate_transposes: the flatten merges axes that are not neighbours in NCHW and
        # would stop a Transpose; it needs the static shapes and folded Reshape targets made above.
        CollapseTensordot(),
        # After the rewrites (which may add Transposes of their own) and layout_io: cancel, merge, fold
        # and push Transposes until they meet.
        EliminateTransposes(),
        # Once Transposes are out of the way, a Conv meets its BatchNormalization (Mul, Add) and
        # ZeroPadding (Pad) directly: fold them into its weights, bias and pads.
        FuseIntoConv(),
        # Last: drop what folding left dangling and sort, as TensorRT's parser needs.
        CleanupToposort(),
    ]


def build_pipeline(names: tuple[str, ...] | None = None, skip: tuple[str, ...] = (), **settings) -> list[Pass]:
    """The default pipeline, or the named passes in the given order, minus ``skip``; ``settings`` are
    ``default_pipeline``'s."""
    unknown = sorted((set(names or ()) | set(skip)) - set(ALL_PASSES))
    if unknown:
        raise PassError(f"unknown pass(es) {', '.join(unknown)}; available: {', '.join(ALL_PASSES)}")
    pipeline = default_pipeline(**settings)
    if names is not None:
        by_name = {p.name: p for p in pipeline}
        pipeline = [by_name[n] for n in names]
    return [p for p in pipeline if p.name not in skip]


__all__ = ["ALL_PASSES", "PRECISION_PASSES", "PROVENANCE_KEY", "CleanupCasts", "CleanupToposort", "CollapseTensordot", "EliminateTransposes", "FoldConstants", "FreezeInputShapes",
           "FuseIntoConv", "InferShapes", "LayoutIO", "Pass", "PassBug", "PassError", "PassManager",
           "PassRecord", "PassResult", "QuantizeInt8", "RewriteTensorRT", "ToBf16", "ToFp16", "UserRules", "build_pipeline", "default_pipeline",
           "fingerprint", "provenance"]
