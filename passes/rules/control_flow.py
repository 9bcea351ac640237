"""loop_if_fold: If on a constant condition → the taken branch; Loop with a static trip count → unrolled body."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from . import Builder, Rule, constant_value, replace_output, static_shape

MAX_UNROLL = 16


def _scalar(v) -> bool | int:
    return np.asarray(v).reshape(-1)[0].item()


def _present(node: gs.Node, i: int) -> gs.Tensor | None:
    return node.inputs[i] if len(node.inputs) > i and node.inputs[i].name else None


def _unsqueeze0(b: Builder, x: gs.Tensor, opset: int) -> gs.Tensor:
    if opset >= 13:
        return b.op("Unsqueeze", [x, b.const(np.array([0], np.int64))], dtype=x.dtype)
    return b.op("Unsqueeze", [x], {"axes": [0]}, dtype=x.dtype)


def _bind(graph: gs.Graph, b: Builder, old: gs.Tensor, value: gs.Tensor, fresh: set[int]) -> None:
    """Make ``value`` stand for ``old`` (a Loop/If output); an Identity where ``value`` is not a fresh tensor.

    A fresh tensor (made by this rewrite, not yet bound) may take over ``old``'s
    name when ``old`` is a graph output; anything else (an outer tensor, a
    constant, a tensor bound already) is copied by an Identity so no other
    tensor is renamed.
    """
    if id(value) not in fresh:
        value = b.op("Identity", [value], dtype=old.dtype, shape=old.shape)
    fresh.discard(id(value))
    replace_output(graph, old, value)


def _detach(node: gs.Node) -> None:
    """Disconnect ``node`` and every node of its subgraphs, so nothing refers to the replaced control flow."""
    for sub in node.subgraphs():
        for n in sub.nodes:
            _detach(n)
        sub.nodes.clear()
    node.inputs.clear()
    node.outputs.clear()



def _like(t: gs.Tensor, value: np.ndarray) -> np.ndarray:
    """``value`` (a scalar) in the shape the body declares for ``t``: tf2onnx declares the iteration
    counter and condition as ``[1]``, which onnxruntime enforces once the body runs as a model."""
    shape = static_shape(t) if t.shape is not None else None
    return value.reshape(shape) if shape is not None and int(np.prod(shape)) == 1 else value

class LoopIfFold(Rule):
    """If with a constant condition → the taken branch inlined; Loop with ≤ 16 known iterations → body unrolled.

    **If**: ``If(c, then, else) → then`` when ``c`` is a constant true, else
    ``else``: the branch's nodes move into the enclosing graph (nested
    subgraphs with them) and the If's outputs become the branch's outputs.
    ``fold_constants`` (onnx-graphsurgeon, ``flatten_subgraphs=True``) already
    flattens an If whose condition folds to an initializer, including one
    decided by a shape once input shapes are frozen; this catches what it
    leaves: a condition held by a ``Constant`` node, as when folding is
    skipped or could not evaluate that graph.

    **Loop**: ``Loop(M, c₀, v₀)`` runs ``(c_{i+1}, v_{i+1}, s_i) = body(i, c_i, v_i)``
    while ``i < M`` and ``c_i``. When the number of iterations ``T`` is known
    when the engine is built, it is the composition of ``T`` body copies:
    ``v_final = v_T`` and each scan output is ``Concat_i(Unsqueeze(s_i, 0))``.
    ``T`` is found by evaluating (onnxruntime) just the part of the body the
    condition depends on, iteration by iteration, from the constant initial
    values; that part may read the iteration number, constants and carried
    values with constant initial values whose updates it also computes. This is
    how a ``tf.while_loop(lambda i, …: i < 3, …)`` export (no trip count, a
    counter in the condition) unrolls. Copy ``i`` reads the constant ``i`` as
    iteration number and ``true`` as its condition; the counter arithmetic
    left over folds away in the pipeline's next round.

    Every inlined node and tensor gets a fresh name ``<node>/loop_if_fold/…``.

    Refuses a Loop whose trip count or initial condition is computed at run
    time, whose condition depends on run-time data, that runs more than 16
    iterations, that runs 0 times but has scan outputs, or whose body holds
    nested subgraphs (they would need copies with remapped outer references).
    """

    name = "loop_if_fold"
    op = ""

    def __init__(self, max_unroll: int = MAX_UNROLL):
        self.max_unroll = max_unroll

    def wants(self, node, graph):
        if node.op == "If":
            return constant_value(node.inputs[0]) is not None
        return node.op == "Loop"

    def check(self, node, graph):
        """The plan: ("if",), or ("loop", its trip count); else why not."""
        if node.op == "If":
            return ("if",)
        found = self._trip_count(node, graph)
        if isinstance(found, str):
            return found
        body = node.attrs["body"]
        if found == 0 and len(body.outputs) > len(node.inputs) - 1:
            return "the loop runs 0 times and has scan outputs, whose empty shape is not known"
        if any(True for n in body.nodes for _ in n.subgraphs()):
            return "the loop body holds a nested Loop/If/Scan; unrolling copies only flat bodies"
        return "loop", found

    def apply(self, node, graph, plan):
        if plan[0] == "if":
            self._inline_if(node, graph)
        else:
            self._unroll(node, graph, plan[1])
        _detach(node)

    # --- If -----------------------------------------------------------------------------------------------------

    def _inline_if(self, node: gs.Node, graph: gs.Graph) -> None:
        b = Builder(graph, node, self.name)
        branch = node.attrs["then_branch" if _scalar(constant_value(node.inputs[0])) else "else_branch"]
        outer, renamed = graph.tensors(), {}
        fresh: set[int] = set()
        for n in branch.nodes:
            for k, t in enumerate(n.inputs):  # branch initializers move out too; a copy where the name is taken
                if isinstance(t, gs.Constant) and outer.get(t.name, t) is not t:
                    n.inputs[k] = renamed.setdefault(id(t), gs.Constant(b.name(t.name), t.values))
            for t in n.outputs:
                t.name = b.name(t.name)
                fresh.add(id(t))
            n.name = b.name(n.name or n.op)
            graph.nodes.append(n)
        results = list(branch.outputs)
        branch.nodes.clear()  # the nodes now live in ``graph``; _detach must not disconnect them
        for old, value in zip(list(node.outputs), results):
            _bind(graph, b, old, value, fresh)

    # --- Loop ---------------------------------------------------------------------------------------------------

    def _trip_count(self, node: gs.Node, graph: gs.Graph) -> int | str:
        """How many times the loop runs, found without run-time data; or why that cannot be known."""
        m_in, c_in = _present(node, 0), _present(node, 1)
        limit = None if m_in is None else constant_value(m_in)
        if m_in is not None and limit is None:
            return f"the trip count '{m_in.name}' is computed at run time"
        limit = None if limit is None else int(_scalar(limit))
        cond = True if c_in is None else constant_value(c_in)
        if cond is None:
            return f"the initial condition '{c_in.name}' is computed at run time"
        cond = bool(_scalar(cond))
        step = self._condition_step(node, graph)
        if isinstance(step, str):
            return step
        evaluate, state = step
        trips = 0
        while cond and (limit is None or trips < limit):
            if trips == self.max_unroll:
                more = f"trip count {limit}" if limit is not None and limit > self.max_unroll else \
                    "its condition still true"
                return f"the loop runs more than {self.max_unroll} iterations ({more}); unrolling stops at " \
                       f"{self.max_unroll}"
            cond, state = evaluate(trips, state)
            trips += 1
        return trips

    def _condition_step(self, node: gs.Node, graph: gs.Graph):
        """``(evaluate, state₀)``: one iteration of the body's condition slice, and the carried values it reads.

        ``evaluate(i, state) -> (c_{i+1}, state_{i+1})``. The slice is the body
        nodes the condition output depends on, closed over the carried values
        it reads (their updates join the slice).
        """
        body = node.attrs["body"]
        n_carried = len(node.inputs) - 2
        it, c_in, v_in = body.inputs[0], body.inputs[1], body.inputs[2:]
        c_out, v_out = body.outputs[0], body.outputs[1:1 + n_carried]
        producer = {id(o): n for n in body.nodes for o in n.outputs}
        carried = {id(t): j for j, t in enumerate(v_in)}
        reads, nodes, seen, stack = set(), set(), set(), [c_out]
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            if id(t) in carried:
                reads.add(carried[id(t)])
                stack.append(v_out[carried[id(t)]])
            elif t is it or t is c_in or isinstance(t, gs.Constant) or not t.name:  # '' : an absent optional input
                continue
            elif id(t) in producer:
                nodes.add(id(producer[id(t)]))
                stack.extend(producer[id(t)].inputs)
            elif constant_value(t) is not None:  # an outer Constant node's output
                nodes.add(id(t.inputs[0]))
            else:
                return f"the loop condition depends on '{t.name}', computed at run time outside the loop"
        reads = sorted(reads)
        state = []
        for j in reads:
            v0 = constant_value(node.inputs[2 + j])
            if v0 is None:
                return (f"the loop condition depends on the carried value '{v_in[j].name}', whose initial value "
                        f"'{node.inputs[2 + j].name}' is computed at run time")
            state.append(np.asarray(v0))
        if not nodes:  # the condition is a constant or passes c_in / carried values through
            def evaluate(i, values):
                env = {id(it): _like(it, np.array(i, np.int64)), id(c_in): _like(c_in, np.array(True)),
                       **{id(v_in[j]): v for j, v in zip(reads, values)}}
                get = (lambda t: constant_value(t) if isinstance(t, gs.Constant) else env[id(t)])
                return bool(_scalar(get(c_out))), [get(v_out[j]) for j in reads]
            return evaluate, state
        return self._ort_step(graph, body, [n for n in [*graph.nodes, *body.nodes] if id(n) in nodes],
                              [it, c_in] + [v_in[j] for j in reads], [c_out] + [v_out[j] for j in reads]), state

    @staticmethod
    def _ort_step(graph, body, nodes, inputs, outputs):
        """Run the condition slice with onnxruntime; outputs pass through Identity so they may alias inputs."""
        import onnxruntime as ort

        sub = gs.Graph(nodes=nodes, inputs=inputs, opset=graph.opset)
        model = gs.export_onnx(sub, do_type_check=False)
        inits = {i.name for i in model.graph.initializer}
        for k, t in enumerate(outputs):
            if isinstance(t, gs.Constant) and t.name not in inits:
                model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(t.values), t.name))
                inits.add(t.name)
            name = f"cond_slice_out_{k}"
            model.graph.node.append(onnx.helper.make_node("Identity", [t.name], [name]))
            dtype = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)) if t.dtype is not None else 0
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, dtype, None))
        model.ir_version = onnx.helper.find_min_ir_version_for(list(model.opset_import))
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [t.name for t in inputs]

        def evaluate(i, values):
            feed = [_like(inputs[0], np.array(i, np.int64)), _like(inputs[1], np.array(True)), *values]
            res = session.run(None, dict(zip(names, feed)))
            return bool(_scalar(res[0])), res[1:]
        return evaluate

    def _unroll(self, node: gs.Node, graph: gs.Graph, trips: int) -> None:
        b = Builder(graph, node, self.name)
        body = node.attrs["body"]
        n_carried = len(node.inputs) - 2
        it, c_in, v_in = body.inputs[0], body.inputs[1], body.inputs[2:]
        v_out, s_out = body.outputs[1:1 + n_carried], body.outputs[1 + n_carried:]
        outer, consts, fresh = graph.tensors(), {}, set()
        state, scans = list(node.inputs[2:]), [[] for _ in s_out]
        true = b.const(np.array(True))

        def outer_const(c: gs.Constant) -> gs.Constant:
            """Body initializers move to ``graph``; one copy for all iterations, renamed only on a clash."""
            if outer.get(c.name, c) is c:
                return c
            if id(c) not in consts:
                consts[id(c)] = gs.Constant(b.name(c.name), c.values)
            return consts[id(c)]

        for i in range(trips):
            env = {id(it): b.const(_like(it, np.array(i, np.int64))), id(c_in): true,
                   **{id(t): v for t, v in zip(v_in, state)}}

            def resolve(t):
                if id(t) in env:
                    return env[id(t)]
                return outer_const(t) if isinstance(t, gs.Constant) else t  # outer tensor

            for n in body.nodes:
                outs = [gs.Variable(b.name(f"iter{i}/{o.name}"), dtype=o.dtype, shape=o.shape) if o.name
                        else gs.Variable.empty() for o in n.outputs]
                env.update({id(o): new for o, new in zip(n.outputs, outs)})
                fresh.update(id(o) for o in outs)
                graph.nodes.append(gs.Node(n.op, b.name(f"iter{i}/{n.name or n.op}"), dict(n.attrs),
                                           [resolve(t) if t.name else gs.Variable.empty() for t in n.inputs],
                                           outs, domain=n.domain))
            state = [resolve(t) for t in v_out]
            for k, t in enumerate(s_out):
                scans[k].append(resolve(t))
        opset = graph.opset or 13
        for old, value in zip(node.outputs[:n_carried], state):
            _bind(graph, b, old, value, fresh)
        for old, parts in zip(node.outputs[n_carried:], scans):
            parts = [_unsqueeze0(b, p, opset) for p in parts]
            value = parts[0] if len(parts) == 1 else b.op("Concat", parts, {"axis": 0}, dtype=old.dtype)
            fresh.add(id(value))
            _bind(graph, b, old, value, fresh)
