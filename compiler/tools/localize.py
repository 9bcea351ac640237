"""Find the first node where two ONNX models part ways (``python -m compiler localize A.onnx B.onnx``).

A failed seam says *that* the outputs differ; this says *where*. Both models
run on the same feeds with onnxruntime, exactly as written (``validate.
validation_session``: no graph optimizations, float16 rounding emulated), with
the tensors they share by name marked as extra graph outputs. The walk follows
the candidate's node order (ONNX requires it to be topological), in batches of
``batch_size`` tensors, so at most that many intermediate tensors of one feed
are held at a time; it stops after the first batch holding a divergent tensor
and names the earliest such tensor, its producing node in the candidate, the
pass that created that node (``tf2trt.provenance``; ``export`` for nodes the
exporter made) and the *suspects*: the candidate's nodes between that tensor
and the last common tensors that matched. A pass that rewrites a node usually
gives its outputs new names, which the reference lacks, so the culprit is
often a suspect upstream of the first divergent common tensor rather than its
producer.

Agreement, element by element, is the seams' (``validate.judge``, Polygraphy's
elementwise rule): ``|a-b| <= atol`` or ``|a-b| <= rtol*|b|`` (``a`` the
reference, ``b`` the candidate, in float64; a zero ``b`` gets Polygraphy's
epsilon), and the same NaN or infinity in both counts as agreement. Integer
and boolean reference tensors must match exactly. ``max_abs``/``max_rel`` are
``validate.error_stats``'s (relative to the reference), maximised over feeds.

The candidate may have changed the graph's interface (``tf2trt.interface``:
a transposed or re-typed input or output, see compiler/common/io_change.py): feeds
are given in the reference's interface and passed through ``Interface.feed``;
the candidate's changed graph outputs are read back through
``Interface.results``. Intermediate tensors are compared as they are; one
whose shape differs between the models (a layout pass moved a Transpose past
it) is skipped, as are tensors of sequence, optional or unknown type.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from passes.infra import provenance

from ..artifacts import TensorSpec
from ..config import check_tolerances
from ..common.samples import load_samples
from ..errors import CompilerError, ValidationError
from ..common.io_change import between, read
from ..common.onnxutil import io_specs
from ..sandbox import read_onnx
from ..validate import data_loader, error_stats, merge_specs, mismatches, resolve_shapes, validation_session

EXPORT = "export"  # created_by of a node no pass recorded: the exporter made it
DEFAULT_BATCH_SIZE = 64
LINE_SUSPECTS = 3  # suspects named in line(); the JSON has them all

SKIP_NOT_TENSOR = "sequence or optional type"
SKIP_UNKNOWN_TYPE = "unknown type (shape inference could not type it)"
SKIP_NON_NUMERIC = "non-numeric dtype"
SKIP_SHAPE = "shape differs between the models (layout changed by a pass)"


@dataclass(frozen=True)
class Suspect:
    node: str
    op: str
    created_by: str

    def text(self) -> str:
        return f"{self.node} ({self.op}, created by {self.created_by})"

    def to_json(self) -> dict:
        return {"node": self.node, "op": self.op, "created_by": self.created_by}


@dataclass(frozen=True)
class Divergence:
    node: str
    op: str
    created_by: str
    tensor: str
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    suspects: tuple[Suspect, ...] = ()
    note: str | None = None  # e.g. a graph output whose shape differs

    def to_json(self) -> dict:
        return {"node": self.node, "op": self.op, "created_by": self.created_by, "tensor": self.tensor,
                "max_abs": self.max_abs, "max_rel": self.max_rel, "atol": self.atol, "rtol": self.rtol,
                "suspects": [s.to_json() for s in self.suspects], "note": self.note}


@dataclass
class Localization:
    """What ``localize`` found. Truthy when no common tensor diverges (like a passing seam)."""

    reference: str
    candidate: str
    compared: int  # common tensors compared (up to and including the batch that diverged)
    skipped: int  # common tensors that could not be compared (see skipped_reasons)
    batches: int  # batches run (each: one extra-outputs run of both models per feed)
    seconds: float
    tolerances: tuple[float, float]
    first_divergence: Divergence | None = None
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    candidate_only: int = 0  # candidate tensors with no counterpart in the reference (renamed or new)
    samples: int = 0  # feeds each batch ran on

    def __bool__(self) -> bool:
        return self.first_divergence is None

    def to_json(self) -> dict:
        atol, rtol = self.tolerances
        return {"reference": self.reference, "candidate": self.candidate, "compared": self.compared,
                "skipped": self.skipped, "skipped_reasons": dict(self.skipped_reasons),
                "candidate_only": self.candidate_only, "samples": self.samples, "batches": self.batches,
                "seconds": round(self.seconds, 4), "tolerances": {"atol": atol, "rtol": rtol},
                "first_divergence": self.first_divergence.to_json() if self.first_divergence else None}

    def line(self) -> str:
        """One sentence for people."""
        d = self.first_divergence
        if d is None:
            atol, rtol = self.tolerances
            skipped = f", {self.skipped} skipped" if self.skipped else ""
            return (f"no divergent node: {self.compared} common tensor(s) agree within atol {atol:g}, rtol {rtol:g} "
                    f"({self.batches} batch(es){skipped})")
        if d.note:
            error = d.note
        elif d.atol == 0 and d.rtol == 0:
            error = f"max abs {d.max_abs:.3g} (integer tensor: must match exactly)"
        else:
            error = f"max abs {d.max_abs:.3g} (atol {d.atol:g}), max rel {d.max_rel:.3g} (rtol {d.rtol:g})"
        text = f"first divergent node: {d.node} ({d.op}, created by {d.created_by}): tensor '{d.tensor}' {error}"
        upstream = [s for s in d.suspects if s.node != d.node]
        if upstream:
            # Nodes a pass made come first: they are the likelier culprits.
            upstream.sort(key=lambda s: s.created_by == EXPORT)
            more = len(upstream) - LINE_SUSPECTS
            text += ("; suspects upstream without a matching counterpart in the reference: "
                     + ", ".join(s.text() for s in upstream[:LINE_SUSPECTS])
                     + (f" and {more} more" if more > 0 else ""))
        return text


def _load(path: Path, role: str):
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"localize: {role} '{path}' does not exist", "pass two ONNX files")
    if path.is_dir():
        raise ValidationError(f"localize: {role} '{path}' is a directory; localize compares two ONNX files",
                              f"export it first: python -m compiler export {path} model.onnx")
    try:
        return read_onnx(path)
    except CompilerError:  # external data outside the model's directory
        raise
    except Exception as e:  # onnx raises DecodeError, OSError, ValueError... for a bad file
        raise ValidationError(f"localize: {role} '{path}' is not a readable ONNX model ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})",
                              "pass two .onnx files (an engine cannot be localized: compare the ONNX it came from)") \
            from None


def _typed(model) -> dict:
    """name -> TypeProto for every value of the main graph that shape inference (or the file) types."""
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # inference failing on a custom op leaves what the file already records
        pass
    graph = model.graph
    return {v.name: v.type for v in [*graph.input, *graph.value_info, *graph.output]}


def _graph_inputs(model) -> list[str]:
    inits = {i.name for i in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in inits]


def _produced(model) -> dict[str, tuple[int, object]]:
    """tensor name -> (index of its producing node, the node), for the main graph."""
    return {out: (i, node) for i, node in enumerate(model.graph.node) for out in node.output if out}


def _node_name(node, index: int) -> str:
    return node.name or f"<unnamed {node.op_type} #{index}>"


def _skip_reason(ref_type, cand_type) -> str | None:
    """Why a common tensor cannot be compared from its types, or None."""
    for t in (ref_type, cand_type):
        if t is None:
            return SKIP_UNKNOWN_TYPE
        kind = t.WhichOneof("value")
        if kind in ("sequence_type", "optional_type", "map_type", "sparse_tensor_type"):
            return SKIP_NOT_TENSOR
        if kind != "tensor_type" or not t.tensor_type.elem_type:
            return SKIP_UNKNOWN_TYPE
        if t.tensor_type.elem_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
            return SKIP_NON_NUMERIC
    return None


def _marked(model, names: list[str], types: dict):
    """``model`` with its graph outputs set to exactly ``names`` (element types only: no shapes to clash), in
    place: the caller restores them (``_restore``). No copy of the weights is made."""
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, types[n].tensor_type.elem_type, None)
                              for n in names)
    return model


def _copy(message):
    copied = type(message)()
    copied.CopyFrom(message)
    return copied


def _restore(model, outputs) -> None:
    del model.graph.output[:]
    model.graph.output.extend(outputs)


def _session(model, role: str, path: Path):
    """A bounded session (compiler.limits): running it fails with a ValidationError naming the model."""
    try:
        return validation_session(model, f"localize: the {role} '{path}'")
    except CompilerError as e:
        raise ValidationError(f"localize: onnxruntime cannot load the {role} '{path}' with intermediate outputs "
                              f"marked ({e.cause})", "check that onnxruntime runs the model as it is") from None


def _run(session, feed: dict, names: list[str]) -> dict:
    return dict(zip(names, session.run(names, feed)))


def _mismatch(ref: np.ndarray, cand: np.ndarray, atol: float, rtol: float) -> bool:
    """Any element outside tolerance (``validate.mismatches``, the seams' rule)."""
    return bool(mismatches(ref, cand, atol, rtol).any())


def _stats(ref: np.ndarray, cand: np.ndarray) -> tuple[float, float]:
    with np.errstate(invalid="ignore"):  # an infinite relative error (a zero reference) in the quantiles
        stats = error_stats(ref, cand)
    return stats["max_abs"], stats["max_rel"]


def _suspects(produced: dict, tensor: str, verified: set[str], origin: dict) -> tuple[Suspect, ...]:
    """The candidate's nodes that feed ``tensor`` without passing through a verified tensor (a common tensor
    that matched), a graph input or an initializer: where the divergence can have come from, in node order."""
    found: dict[int, object] = {}
    stack = [tensor]
    seen = set()
    while stack:
        name = stack.pop()
        if name in seen or name not in produced:
            continue
        seen.add(name)
        index, node = produced[name]
        if index in found:
            continue
        found[index] = node
        stack.extend(i for i in node.input if i and i not in verified)
    return tuple(Suspect(_node_name(n, i), n.op_type, origin.get(n.name, EXPORT)) for i, n in sorted(found.items()))


def localize(reference: Path, candidate: Path, feeds, tolerances: tuple[float, float] = (1e-5, 1e-5),
             batch_size: int = DEFAULT_BATCH_SIZE) -> Localization:
    """Run ``reference`` and ``candidate`` (ONNX files) on ``feeds`` (dicts of arrays in the reference's
    interface) and find the first tensor of the candidate, in topological order, that leaves ``tolerances``
    ((atol, rtol)) against the reference's tensor of the same name. See the module docstring."""
    start = time.perf_counter()
    reference, candidate = Path(reference), Path(candidate)
    check_tolerances(*tolerances)
    atol, rtol = (float(t) for t in tolerances)
    if batch_size < 1:
        raise ValidationError(f"localize: the batch size must be at least 1, got {batch_size}",
                              "give a positive number of tensors per batch")
    ref, cand = _load(reference, "reference"), _load(candidate, "candidate")
    feeds, change = _checked(ref, cand, list(feeds))
    ref_types, cand_types = _typed(ref), _typed(cand)
    walk, skipped_reasons, candidate_only = _comparable(ref, cand, ref_types, cand_types)
    if not walk:
        skipped = sum(skipped_reasons.values())
        raise ValidationError(f"localize: '{candidate}' and '{reference}' share no comparable tensor (by name"
                              + (f"; {skipped} common tensor(s) skipped" if skipped else "") + ")",
                              "localize compares two versions of one model, whose tensors keep their names")
    cand_produced, origin = _produced(cand), provenance(cand)
    candidate_outputs = {o.name for o in cand.graph.output}
    pair = _Pair(ref, cand, reference, candidate, ref_types, cand_types, feeds, change)
    compared = batches = 0
    verified: set[str] = set()
    divergence = None
    for lo in range(0, len(walk), batch_size):
        names = walk[lo:lo + batch_size]
        batches += 1
        worst, bad, exact, shape_note = pair.diffs(names, atol, rtol)
        first = None
        for n in names:
            if n in shape_note and n not in candidate_outputs:
                skipped_reasons[SKIP_SHAPE] = skipped_reasons.get(SKIP_SHAPE, 0) + 1
                continue
            compared += 1
            if n in bad or n in shape_note:
                first = first or n
            elif first is None:
                verified.add(n)
        if first is not None:
            index, node = cand_produced[first]
            tol = (0.0, 0.0) if first in exact else (atol, rtol)
            max_abs, max_rel = (float("inf"), float("inf")) if first in shape_note else tuple(worst[first])
            divergence = Divergence(_node_name(node, index), node.op_type, origin.get(node.name, EXPORT), first,
                                    max_abs, max_rel, *tol,
                                    suspects=_suspects(cand_produced, first, verified, origin),
                                    note=shape_note.get(first))
            break
    return Localization(str(reference), str(candidate), compared, sum(skipped_reasons.values()), batches,
                        time.perf_counter() - start, (atol, rtol), divergence, skipped_reasons, candidate_only,
                        len(feeds))


def _checked(ref, cand, feeds: list):
    """(feeds, the candidate's interface change relative to the reference), or why the two cannot be compared."""
    if not feeds:
        raise ValidationError("localize: no input samples", "give at least one feed")
    ref_inputs, cand_inputs = _graph_inputs(ref), _graph_inputs(cand)
    if set(ref_inputs) != set(cand_inputs):
        raise ValidationError(f"localize: the models' inputs differ: reference takes {', '.join(ref_inputs)}; "
                              f"candidate takes {', '.join(cand_inputs)}",
                              "compare two versions of one model (e.g. exported and optimized, fp32 and fp16)")
    for i, feed in enumerate(feeds):
        if set(feed) != set(ref_inputs):
            raise ValidationError(f"localize: sample {i} gives {', '.join(sorted(feed)) or 'nothing'}, but the "
                                  f"models take {', '.join(ref_inputs)}", "give one array per model input")
    try:
        return feeds, between(read(ref), read(cand))
    except ValueError as e:
        raise ValidationError(f"localize: the models changed the interface differently ({e})",
                              "localize each against the exported model instead") from None


def _comparable(ref, cand, ref_types, cand_types):
    """(the candidate's tensors both models compute and can be compared, in topological order; why the others
    were skipped, counted; how many tensors only the candidate computes)."""
    ref_produced = _produced(ref)
    walk, skipped_reasons, candidate_only = [], {}, 0
    for node in cand.graph.node:
        for name in node.output:
            if not name:
                continue
            if name not in ref_produced:
                candidate_only += 1
                continue
            reason = _skip_reason(ref_types.get(name), cand_types.get(name))
            if reason:
                skipped_reasons[reason] = skipped_reasons.get(reason, 0) + 1
            else:
                walk.append(name)
    return walk, skipped_reasons, candidate_only


@dataclass
class _Pair:
    """The two models, run side by side with chosen intermediate tensors marked as outputs."""

    ref: object
    cand: object
    reference: Path
    candidate: Path
    ref_types: dict
    cand_types: dict
    feeds: list
    change: object

    def diffs(self, names: list[str], atol: float, rtol: float):
        """For ``names`` over every feed: (worst [max abs, max rel] per name, names out of tolerance, integer
        names, shape mismatches by name)."""
        ref_outputs = [_copy(o) for o in self.ref.graph.output]
        cand_outputs = [_copy(o) for o in self.cand.graph.output]
        try:
            ref_sess = _session(_marked(self.ref, names, self.ref_types), "reference", self.reference)
            cand_sess = _session(_marked(self.cand, names, self.cand_types), "candidate", self.candidate)
        finally:
            _restore(self.ref, ref_outputs)
            _restore(self.cand, cand_outputs)
        worst = {n: [0.0, 0.0] for n in names}
        bad, exact, shape_note = set(), set(), {}
        for feed in self.feeds:
            ref_out = _run(ref_sess, feed, names)
            cand_out = _run(cand_sess, self.change.feed(feed) if self.change else feed, names)
            if self.change:
                cand_out.update(self.change.results({n: cand_out[n] for n in names if n in self.change.outputs}))
            for n in names:
                a, b = np.asarray(ref_out[n]), np.asarray(cand_out[n])
                if a.shape != b.shape:
                    shape_note[n] = f"shape {list(b.shape)} in the candidate but {list(a.shape)} in the reference"
                    continue
                if a.dtype.kind in "iub":
                    exact.add(n)
                if _mismatch(a, b, atol, rtol):
                    bad.add(n)
                max_abs, max_rel = _stats(a, b)
                worst[n][0], worst[n][1] = max(worst[n][0], max_abs), max(worst[n][1], max_rel)
        return worst, bad, exact, shape_note


def seam_inputs(reference: Path, candidate: Path):
    """The reference's input specs, with the dims either model fixes made static (as a seam merges them)."""
    ref, cand = _load(Path(reference), "reference"), _load(Path(candidate), "candidate")
    change = read(cand)
    cand_inputs = tuple(TensorSpec(t.name, t.dtype, change.reference_shape(t.name, t.shape))
                        for t in io_specs(cand)[0])
    return merge_specs(io_specs(ref)[0], cand_inputs)


def random_feeds(reference: Path, candidate: Path, shapes: dict | None = None, batch: int = 1,
                 data: str | None = None, seed: int = 0, count: int = 1):
    """Feeds for ``localize`` in the reference's interface: ``data`` (compiler/common/samples.py forms), else ``count``
    seeded random samples, with shapes from ``shapes`` and the static dims either model fixes (dynamic batch:
    ``batch``). Returns ``compiler.common.samples.Samples``. Seven parameters: the localize subcommand's flags, all
    optional but the two models."""
    inputs = seam_inputs(reference, candidate)
    resolved = resolve_shapes(inputs, dict(shapes or {}), batch)
    return load_samples(data, inputs, resolved, what="localization", error=ValidationError, seed=seed,
                        random_count=count)


def localize_seam(reference: Path, candidate: Path, shapes: dict, cfg, samples,
                  tolerances: tuple[float, float]) -> tuple[dict, str]:
    """compile's use, after the ``onnx→optimized`` seam failed: localize on that seam's data (``samples``,
    i.e. --data, when they feed the reference's inputs, else the seam's seeded Polygraphy loader with ``shapes``
    and ``cfg``, a ValidateConfig).

    Returns (the report's ``localization`` entry, a clause for the error line). A failure here must not hide the
    seam's failure: any exception becomes ``{"error": reason}`` and a clause saying localization failed."""
    try:
        inputs = seam_inputs(reference, candidate)
        if samples is not None and {t.name for t in inputs} == set(samples.feeds[0]):
            feeds = list(samples)
        else:
            feeds = [dict(f) for f in data_loader(inputs, resolve_shapes(inputs, dict(shapes or {}), cfg.batch), cfg)]
        result = localize(reference, candidate, feeds, tolerances)
        return result.to_json(), result.line()
    except CompilerError as e:
        reason = e.cause
    except Exception as e:  # a bug in localization: report it beside the seam failure, never instead of it
        reason = f"unexpected {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return {"error": reason}, f"localizing the first divergent node failed ({reason})"
