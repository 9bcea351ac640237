"""fuse_into_conv: fold per-channel affine ops after a Conv, and a zero Pad before it, into the Conv itself.

Rewrites (``W`` weights ``[C, ...]``, ``b`` bias ``[C]``, ``s``/``t`` constants that
broadcast per output channel, i.e. shaped ``[C, 1, .., 1]`` or a scalar):

- ``Conv(x, W, b) * s  →  Conv(x, W·s, b·s)`` (scale each output channel's filter);
- ``Conv(x, W, b) + t  →  Conv(x, W, b + t)``, and ``- t`` as ``b − t``;
- ``Conv(Pad(x, p), W)  →  Conv(x, W, pads = p + pads)`` when the Pad is constant-mode
  with value 0 and pads only spatial axes.

This is how tf2onnx leaves Keras' Conv → BatchNormalization (a Mul and an Add)
and ``ZeroPadding2D``. TensorRT would fuse them at build time too; doing it in
the graph means fewer nodes to parse and one less job per engine build. The
scale is applied to the weights once, so results differ from the unfused graph
by float rounding only (about 1e-7 relative). The Conv's output must have no
other reader; a Conv without bias gets one.
"""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from .infra import Pass, PassResult


def _const(t):
    return t.values if isinstance(t, gs.Constant) else None


def _per_channel(v: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``v`` as a length-``channels`` vector if it broadcasts per channel over a rank-``rank`` NC... tensor."""
    if v is None or v.ndim > rank or v.dtype.kind != "f":
        return None
    full = v.reshape((1,) * (rank - v.ndim) + v.shape)
    if full.shape[0] != 1 or full.shape[1] not in (1, channels) or any(d != 1 for d in full.shape[2:]):
        return None
    return np.broadcast_to(full.reshape(-1), (channels,)) if full.shape[1] == 1 else full.reshape(channels)


def _single_reader(t, graph) -> gs.Node | None:
    return t.outputs[0] if len(t.outputs) == 1 and t not in graph.outputs else None


class FuseIntoConv(Pass):
    name = "fuse_into_conv"

    def run(self, graph: gs.Graph) -> PassResult:
        stats = {"affine": 0, "pad": 0}
        for node in list(graph.nodes):
            if node.op != "Conv" or not node.outputs:
                continue
            while self._fuse_affine(graph, node):
                stats["affine"] += 1
            stats["pad"] += self._fuse_pad(graph, node)
        changed = bool(stats["affine"] or stats["pad"])
        if changed:
            graph.cleanup(remove_unused_graph_inputs=False)
        return PassResult(changed=changed, stats=stats)

    def _fuse_affine(self, graph, conv) -> bool:
        w = _const(conv.inputs[1]) if len(conv.inputs) > 1 else None
        if w is None or w.dtype != np.float32:
            return False
        y = conv.outputs[0]
        reader = _single_reader(y, graph)
        if reader is None or reader.op not in ("Mul", "Add", "Sub") or len(reader.inputs) != 2:
            return False
        if reader.op == "Sub" and reader.inputs[0] is not y:
            return False  # t − conv is not a bias
        other = reader.inputs[1] if reader.inputs[0] is y else reader.inputs[0]
        vec = _per_channel(_const(other), w.shape[0], w.ndim)
        if vec is None:
            return False
        vec = vec.astype(np.float32)
        b = _const(conv.inputs[2]) if len(conv.inputs) > 2 else np.zeros(w.shape[0], np.float32)
        if b is None:
            return False
        if reader.op == "Mul":
            w, b = w * vec.reshape((-1,) + (1,) * (w.ndim - 1)), b * vec
        else:
            b = b + vec if reader.op == "Add" else b - vec
        conv.inputs[1] = gs.Constant(f"{conv.name}/fuse_into_conv/W_{id(reader)}", w.astype(np.float32))
        bias = gs.Constant(f"{conv.name}/fuse_into_conv/b_{id(reader)}", b.astype(np.float32))
        if len(conv.inputs) > 2:
            conv.inputs[2] = bias
        else:
            conv.inputs.append(bias)
        out = reader.outputs[0]
        reader.outputs.clear()
        conv.outputs[0] = out
        return True

    def _fuse_pad(self, graph, conv) -> int:
        x = conv.inputs[0]
        pad = x.inputs[0] if len(x.inputs) == 1 else None
        if pad is None or pad.op != "Pad" or _single_reader(x, graph) is not conv:
            return 0
        mode = pad.attrs.get("mode", "constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant" or conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
            return 0
        pads = _const(pad.inputs[1]) if len(pad.inputs) > 1 else None
        value = _const(pad.inputs[2]) if len(pad.inputs) > 2 and pad.inputs[2].name else np.zeros(1)
        if pads is None or value is None or np.any(value != 0) or (len(pad.inputs) > 3 and pad.inputs[3].name):
            return 0
        r = len(pads) // 2
        begin, end = pads[:r], pads[r:]
        if r < 3 or np.any(begin[:2]) or np.any(end[:2]) or np.any(pads < 0):
            return 0
        k = r - 2
        old = list(conv.attrs.get("pads", [0] * (2 * k)))
        conv.attrs["pads"] = [int(old[i] + begin[2 + i]) for i in range(k)] + \
                             [int(old[k + i] + end[2 + i]) for i in range(k)]
        conv.inputs[0] = pad.inputs[0]
        return 1
