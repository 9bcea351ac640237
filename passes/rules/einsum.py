"""einsum_to_matmul: Einsum as ReduceSum / Transpose / Reshape / MatMul, which TensorRT runs natively."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx_graphsurgeon as gs

from . import Builder, Refusal, Rule, replace_output

# Labels standing in for the dimensions an ellipsis covers; ONNX equations use only [a-zA-Z].
_ELLIPSIS_LABELS = "".join(chr(0x3B1 + k) for k in range(24))


def parse_equation(equation: str, ranks: list[int | None]) -> tuple[list[str], str]:
    """Operand and output labels, one label per dimension, ellipses expanded (raises ValueError with the reason).

    An ellipsis covers the dimensions an operand has beyond its letters; the
    ellipses of all operands are right-aligned against each other (numpy
    broadcasting). Without ``->`` the output is the ellipsis dimensions, then
    the letters used exactly once, in alphabetical order (the ONNX spec).
    """
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"the equation names {len(terms)} operands but the node has {len(ranks)} inputs")
    letters = [t.replace("...", "") for t in terms] + [rhs.replace("...", "")]
    if any(not s.isascii() or (s and not s.isalpha()) for s in letters):
        raise ValueError(f"equation '{equation}' has characters other than letters, ',', '->' and '...'")
    n_ell = 0
    for t, r in zip(terms, ranks):
        if "..." in t:
            if r is None:
                raise ValueError(f"operand '{t}' has an ellipsis but its rank is unknown")
            n_ell = max(n_ell, r - (len(t) - 3))
    if n_ell > len(_ELLIPSIS_LABELS):
        raise ValueError(f"an ellipsis covers {n_ell} dimensions (at most {len(_ELLIPSIS_LABELS)})")
    ell = _ELLIPSIS_LABELS[:n_ell]
    expanded = []
    for t, r in zip(terms, ranks):
        if "..." in t:
            t = t.replace("...", ell[n_ell - (r - (len(t) - 3)):])
        if r is None:
            raise ValueError(f"the rank of operand '{t}' is unknown")
        if len(t) != r:
            raise ValueError(f"operand '{t}' names {len(t)} dimensions but has rank {r}")
        expanded.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = Counter("".join(expanded))
        out = ell + "".join(sorted(c for c in counts if counts[c] == 1 and c not in ell))
    if len(set(out)) != len(out):
        raise ValueError(f"the output '{rhs}' repeats an index")
    missing = set(out) - set("".join(expanded))
    if missing:
        raise ValueError(f"output index '{''.join(sorted(missing))}' appears in no operand")
    return expanded, out


def _dim(t: gs.Tensor, i: int) -> int | None:
    d = t.shape[i]
    return int(d) if isinstance(d, (int, np.integer)) and d >= 0 else None


class _Plan:
    """Everything ``apply`` emits for one Einsum, worked out (and refused, by ValueError) before any node exists."""

    def __init__(self, node: gs.Node):
        if len(node.inputs) not in (1, 2):
            raise ValueError(f"{len(node.inputs)} operands: only one- and two-operand equations map onto MatMul "
                             "and Transpose")
        ranks = [None if t.shape is None else len(t.shape) for t in node.inputs]
        self.terms, self.out = parse_equation(str(node.attrs.get("equation", "")), ranks)
        for k, t in enumerate(self.terms):
            repeated = sorted(c for c, n in Counter(t).items() if n > 1)
            if repeated:
                raise ValueError(f"index '{repeated[0]}' repeats within operand {k} (a diagonal or trace), which "
                                 "Transpose/MatMul cannot express")
        self.size = self._sizes(node)
        # Σ first over the labels only one operand has and the output lacks.
        self.summed, self.kept = [], []
        for k, t in enumerate(self.terms):
            others = "".join(self.terms[:k] + self.terms[k + 1:]) + self.out
            self.summed.append([i for i, c in enumerate(t) if c not in others])
            self.kept.append("".join(c for c in t if c in others))
        if len(self.terms) == 2:
            (ta, tb), out = self.kept, self.out
            batch = [c for c in out if c in ta and c in tb]
            self.left = [c for c in out if c in ta and c not in tb]
            self.right = [c for c in out if c in tb and c not in ta]
            contr = [c for c in ta if c in tb and c not in out]
            self.batch, one = batch, [[c] for c in batch]
            self.a_order, self.b_order = "".join(batch + self.left + contr), "".join(batch + contr + self.right)
            self.reshapes = [  # (from groups, to groups) for operand a, operand b, the product
                (one + [[c] for c in self.left + contr], one + [self.left, contr]),
                (one + [[c] for c in contr + self.right], one + [contr, self.right]),
                (one + [self.left, self.right], one + [[c] for c in self.left + self.right])]
            self.targets = [_reshape_target(src, dst, self.size) for src, dst in self.reshapes]

    def _sizes(self, node: gs.Node) -> dict[str, int | None]:
        """Size per label from any operand; 1 in one operand and n in another only where MatMul broadcasts it."""
        sizes: dict[str, set] = {}
        for t, x in zip(self.terms, node.inputs):
            for i, c in enumerate(t):
                d = _dim(x, i)
                sizes.setdefault(c, set()).update([] if d is None else [d])
        batch = set(self.terms[0]) & set(self.terms[-1]) & set(self.out) if len(self.terms) == 2 else set()
        for c, known in sizes.items():
            if len(known - {1}) > 1:
                raise ValueError(f"index '{c}' has sizes {sorted(known)} in different operands")
            if len(known) > 1 and c not in batch:
                raise ValueError(f"index '{c}' broadcasts (sizes {sorted(known)}) but is not a batch index")
        return {c: max(known) if known else None for c, known in sizes.items()}


def _reshape_target(src: list[list[str]], dst: list[list[str]], size: dict) -> list[int] | None:
    """Reshape target from groups of labels ``src`` to groups ``dst`` (one dimension per group), or None: no-op.

    A target dimension is 0 (copy) where the same group sits at the same
    position in the source, so dynamic batch dimensions pass through; else the
    static product of its sizes (1 for an empty group); at most one unknown
    product becomes -1.
    """
    if src == dst:
        return None
    target = []
    for p, g in enumerate(dst):
        if p < len(src) and src[p] == g and g:
            target.append(0)
        elif all(size[c] is not None for c in g):
            target.append(int(np.prod([size[c] for c in g], dtype=np.int64)))
        else:
            target.append(-1)
    if target.count(-1) > 1:
        unknown = ["".join(g) for g, v in zip(dst, target) if v == -1]
        raise ValueError(f"dimension groups {unknown} have unknown sizes (at most one reshape dimension can be "
                         "inferred); freeze the input shapes")
    return target


def _reshape(b: Builder, x, target: list[int] | None, dtype):
    return x if target is None else b.op("Reshape", [x, b.const(np.array(target, np.int64))], dtype=dtype)


def _transpose(b: Builder, x, src: str, dst: str, dtype):
    if src == dst:
        return x
    return b.op("Transpose", [x], attrs={"perm": [src.index(c) for c in dst]}, dtype=dtype)


def _reduce_sum(b: Builder, x, axes: list[int], opset: int, dtype):
    if opset >= 13:
        return b.op("ReduceSum", [x, b.const(np.array(axes, np.int64))], attrs={"keepdims": 0}, dtype=dtype)
    return b.op("ReduceSum", [x], attrs={"axes": axes, "keepdims": 0}, dtype=dtype)


class EinsumToMatMul(Rule):
    """Einsum with one or two operands → ReduceSum / Transpose / Reshape / MatMul (no Einsum left).

    TensorRT's Einsum layer rejects ellipses, diagonals and more than two
    operands, and runs slower than MatMul; tf2onnx leaves ellipsis equations
    (``'...ij,...jk->...ik'``) as Einsum. Labels are classified (ellipsis
    dimensions become labels first, right-aligned across operands):

    - batch ``B``: in both operands and the output; contracted ``K``: in both,
      not in the output; free ``L`` / ``R``: in one operand and the output;
      summed ``S``: in one operand only, not in the output.

    Then ``out = T(Reshape(MatMul(Reshape(T(ΣS A), [B…, ∏L, ∏K]),
    Reshape(T(ΣS B), [B…, ∏K, ∏R])), [B…, L…, R…]))``, since
    ``Σ_K A[b,l,k]·B[b,k,r]`` is a batched matrix product over the merged
    L, K, R groups. Batch dimensions stay separate (MatMul broadcasts them and
    Reshape copies them with 0, so a dynamic batch keeps working); an empty
    group is a dimension of 1; identity Transposes and no-op Reshapes are not
    emitted. One operand: ``ReduceSum`` over the labels missing from the
    output, then a Transpose into its order (an Identity when it is the input).

    Refuses three or more operands, an index repeated within an operand
    (diagonal, trace), unknown ranks, and more than one unknown size in one
    reshape.
    """

    name = "einsum_to_matmul"
    op = "Einsum"

    def check(self, node, graph) -> _Plan | Refusal:
        try:
            return _Plan(node)
        except ValueError as e:
            return Refusal(str(e))

    def apply(self, node, graph, plan: _Plan):
        b = Builder(graph, node, self.name)
        dtype, opset = node.outputs[0].dtype, graph.opset or 13
        xs = [_reduce_sum(b, x, axes, opset, dtype) if axes else x for x, axes in zip(node.inputs, plan.summed)]
        if len(xs) == 1:
            y = _transpose(b, xs[0], plan.kept[0], plan.out, dtype)
        else:
            (ta, tb), (ra, rb, ry) = plan.kept, plan.targets
            a = _reshape(b, _transpose(b, xs[0], ta, plan.a_order, dtype), ra, dtype)
            x2 = _reshape(b, _transpose(b, xs[1], tb, plan.b_order, dtype), rb, dtype)
            y = _reshape(b, b.op("MatMul", [a, x2], dtype=dtype), ry, dtype)
            y = _transpose(b, y, "".join(plan.batch + plan.left + plan.right), plan.out, dtype)
        if y is node.inputs[0]:
            y = b.op("Identity", [y], dtype=dtype)
        replace_output(graph, node.outputs[0], y)
