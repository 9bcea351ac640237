#!/usr/bin/env python3
"""Our graph passes against onnxslim and Polygraphy's sanitize, on the same ONNX models.

    python scripts/bench/passes.py [MODEL ...] [--runs 3] [--fixtures a,b | --no-fixtures]
                                   [--mobilenet DIR] [--input-shapes SPEC] [--json FILE] [--workdir DIR]

What runs. Each model is exported to ONNX once (the compilable fixtures of tests/conftest.py
with ``compiler.api.export_model``; MODEL arguments may be ``.onnx`` files or SavedModels), its
input shapes are fixed, and three tools rewrite it with those same shapes frozen:

  ours        compiler.optimize.optimize(model.onnx, out, OptimizeConfig(input_shapes=...)):
              the default pass pipeline, onnx.checker, the interface record, the save
  onnxslim    onnxslim.slim(model.onnx, out, input_shapes=[...]): what the ``onnxslim`` CLI
              calls once it has parsed its flags (default optimizations, shape inference)
  polygraphy  polygraphy.tools.main(["surgeon", "sanitize", model.onnx, "--fold-constants",
              "--override-input-shapes", ..., "-o", out]): the ``polygraphy`` CLI's own entry point

Input shapes: a fixture's from its golden inputs (fixtures/golden/NAME.npz), else from its
``--input-shapes`` flag in COMPILABLE; other models' from ``--input-shapes`` for the names it
gives and their static shapes otherwise, with a dynamic leading (batch) dimension set to
``--batch`` (default 1). Any other dynamic dimension must be given.

How it is timed. Every run of every tool is a fresh child process (this script with
``--child``), so no tool inherits another's caches, warmed allocators or leftover state, and
all three are treated alike. The child first imports what the tools share (numpy, onnx,
onnx-graphsurgeon, onnxruntime), the tool's own modules and those it would load lazily, then
times the one call above with time.perf_counter(): load from disk, rewrite, save to disk.
Imports are excluded because they are a fixed cost of a Python process, not of the rewrite,
and on small models they would swamp it (about a second each). A module the call still
imports is named under the model's table, so import time that slips into a tool's timing is
visible. The wall time of the whole child, start-up and imports included, is kept in the JSON
as ``process_s`` for anyone who wants the end-to-end number. Runs alternate between the
tools, and each round starts with the next tool in turn (ours/onnxslim/polygraphy, then
onnxslim/polygraphy/ours, ...), so drift in machine load is spread over all three. Medians
are reported; ``min`` is printed beside them.

What is checked. Each tool's last output is run with onnxruntime (graph optimizations off, so
the graph is run as the tool wrote it) against the unoptimized model on the same seeded random
inputs (floats uniform in [-1, 1], integers in [0, 8], booleans random; seed ``--seed``), and
the largest absolute difference over all outputs is printed. Where our passes changed the
interface on purpose (float64 IO to float32, NCHW IO), the model's ``tf2trt.interface`` record
adapts the feed and the outputs, as the compiler's seams do. An output passes when every
element is within atol 1e-4 or rtol 1e-3 (the ``validate`` seam's defaults; integer outputs must
match exactly). The ``outputs`` column says ``ok``, ``MISMATCH`` (a tool that wins on node count
by breaking the model), ``NOT RUN`` (onnxruntime rejects the tool's output; the reason is
printed under the table) or ``FAILED`` (the tool itself failed).

Columns: ``nodes`` and ``Transpose`` count every node, subgraphs (Loop/If bodies) included.
Ratios are ours / peer, of node counts and of median times: below 1 means ours is smaller or
faster.

Reproduce (nothing else running; results compare only on the same machine and the package
versions the script prints):

    .venv/bin/python scripts/bench/passes.py --runs 5
    .venv/bin/python scripts/bench/passes.py --no-fixtures --mobilenet /tmp/bench/mobilenetv2 --runs 5 --json out.json

``--mobilenet DIR`` uses the SavedModel made by scripts/bench/make_mobilenetv2.py, and makes it
there first if DIR does not exist.

Exit status: 0 when our passes ran on every model and their outputs matched; 1 when our
passes failed or broke a model (a peer's failure or mismatch is printed in its row and in a
closing note but is a result, not an error of the benchmark); 2 for bad arguments.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# This file is named passes.py, so with its own directory first on sys.path `import passes` would
# find this script instead of the package. Put the repository root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402

from scripts.bench import benchlib  # noqa: E402
from scripts.bench.benchlib import BadInput, Model, Shapes  # noqa: E402

TOOLS = ("ours", "onnxslim", "polygraphy")
PEERS = ("onnxslim", "polygraphy")
VERSIONED_PACKAGES = ("tf2trt-compiler", "onnx", "onnx-graphsurgeon", "onnxruntime", "onnxslim", "polygraphy",
                      "tf2onnx", "tensorflow", "numpy")
ATOL, RTOL = 1e-4, 1e-3  # compiler.config.DEFAULT_TOLERANCES["validate"]
TAIL_LINES = 30



# --------------------------------------------------------------------------------------------------------------
# The child: one timed call of one tool.

# Modules each child imports before the clock starts: what the tools share, then each tool's own,
# including those it would otherwise load inside the timed call.
PRELOAD = {
    "shared": ("numpy", "numpy.random", "onnx", "onnx_graphsurgeon", "onnxruntime",
               # onnxslim's and Polygraphy's symbolic shape inference use sympy, which loads these on first use.
               "sympy.assumptions.wrapper", "sympy.combinatorics", "sympy.tensor.tensor"),
    "ours": ("passes", "compiler.config", "compiler.optimize"),  # optimize() imports passes inside the call
    "onnxslim": ("onnxslim", "onnxslim.core", "onnxslim.utils", "colorama"),  # its summary table needs colorama
    # main() imports every tool to build its parser; sanitize runs onnxruntime's symbolic shape
    # inference (about 0.6 s of imports, sympy among them) and logs the loaded model.
    "polygraphy": ("polygraphy.tools", "polygraphy.tools.registry", "polygraphy.backend.onnx",
                   "onnxruntime.tools.symbolic_shape_infer", "polygraphy.tools.inspect.subtool.model.extractors",
                   "polygraphy.tools.inspect.subtool.model.text", "polygraphy.tools.multi_device.subtool"),
}


def _child(tool: str, src: str, dst: str, shapes_json: str, result_path: str) -> int:
    """Import everything first (PRELOAD), then time one rewrite of ``src`` into ``dst``; write the seconds as JSON.

    The result also lists modules the call still imported, so an import that slips into the
    timing is visible rather than silently charged to a tool.
    """
    import importlib

    if tool not in TOOLS:
        raise SystemExit(f"unknown tool {tool!r}")
    for name in PRELOAD["shared"] + PRELOAD[tool]:
        importlib.import_module(name)

    shapes = {k: tuple(v) for k, v in json.loads(shapes_json).items()}
    if tool == "ours":
        from compiler.config import OptimizeConfig
        from compiler.optimize import optimize

        def call():
            optimize(Path(src), Path(dst), OptimizeConfig(input_shapes=shapes))
    elif tool == "onnxslim":
        import onnxslim

        # onnxslim takes NAME:D,D,...; a scalar input (no dims) is static already and cannot be written so.
        spec = [f"{k}:{','.join(map(str, v))}" for k, v in shapes.items() if v]

        def call():
            onnxslim.slim(src, dst, input_shapes=spec or None)
    else:
        from polygraphy.tools import main as polygraphy_main

        argv = ["surgeon", "sanitize", src, "--fold-constants", "-o", dst]
        if shapes:
            argv += ["--override-input-shapes", *(f"{k}:[{','.join(map(str, v))}]" for k, v in shapes.items())]

        def call():
            status = polygraphy_main(argv)
            if status:
                raise SystemExit(f"polygraphy exited with status {status}")
    loaded = set(sys.modules)
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    late = sorted(set(sys.modules) - loaded)
    Path(result_path).write_text(json.dumps({"seconds": seconds, "modules_imported": len(late),
                                             "late_modules": late}))
    return 0


# --------------------------------------------------------------------------------------------------------------
# The parent: models, runs, checks, table.

@dataclass
class ToolResult:
    tool: str
    seconds: list[float] = field(default_factory=list)  # the timed call, one per run
    process_s: list[float] = field(default_factory=list)  # the whole child, start-up and imports included
    nodes: int | None = None
    transposes: int | None = None
    max_abs_err: float | None = None
    outputs_ok: bool | None = None
    verdict: str = "-"  # ok | MISMATCH (outputs differ) | NOT RUN (onnxruntime rejects its output) | FAILED (the tool)
    error: str | None = None  # the tool failed, or its output could not be checked
    late_imports: list[str] = field(default_factory=list)  # modules first imported inside the timed call

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None


def count_nodes(model) -> tuple[int, int]:
    """(all nodes, Transpose nodes), subgraphs included."""
    import onnx

    total = transposes = 0
    stack = [model.graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            total += 1
            transposes += n.op_type == "Transpose"
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    return total, transposes


def _dims(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]


def resolve_shapes(model, given: Shapes, batch: int, label: str) -> Shapes:
    """Every graph input's static shape: ``given`` where named, else its own with a dynamic batch set to ``batch``."""
    inits = {i.name for i in model.graph.initializer}
    shapes: Shapes = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if vi.name in given:
            shapes[vi.name] = tuple(given[vi.name])
            continue
        dims = _dims(vi)
        if dims and dims[0] is None:
            dims[0] = batch
        if None in dims:
            raise BadInput(f"{label}: input '{vi.name}' has dynamic dimensions {_dims(vi)}; "
                           f"fix: give them with --input-shapes {vi.name}:" + "x".join(str(d or "N") for d in dims))
        shapes[vi.name] = tuple(dims)
    return shapes


def seeded_feed(model, shapes: Shapes, seed: int) -> dict:
    import numpy as np
    import onnx

    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    feed = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
        shape = shapes[vi.name]
        if dtype == np.bool_:
            feed[vi.name] = rng.integers(0, 2, shape).astype(bool)
        elif np.issubdtype(dtype, np.integer):
            feed[vi.name] = rng.integers(0, 9, shape).astype(dtype)
        else:
            feed[vi.name] = rng.uniform(-1, 1, shape).astype(dtype)
    return feed


def run_onnx(path: Path, feed: dict) -> dict:
    """Outputs by name, graph optimizations off, with the model's recorded interface change undone."""
    import onnxruntime as ort

    from compiler import interface

    change = interface.read(path)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    out = sess.run(None, {k: v for k, v in change.feed(feed).items() if k in wanted})
    return dict(change.results(dict(zip(names, out))))


def compare(reference: dict, candidate: dict) -> tuple[float, bool, str | None]:
    """(max abs error over all outputs, every element within ATOL or RTOL, what is missing or misshapen)."""
    import numpy as np

    worst, ok = 0.0, True
    for name, ref in reference.items():
        if name not in candidate:
            return float("nan"), False, f"output '{name}' missing"
        ref, got = np.asarray(ref), np.asarray(candidate[name])
        if ref.shape != got.shape:
            return float("nan"), False, f"output '{name}' has shape {got.shape}, expected {ref.shape}"
        if ref.size == 0:
            continue
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        err = np.abs(ref64 - got64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(err == 0, 0.0, err / np.abs(ref64))
        if np.issubdtype(ref.dtype, np.integer) or ref.dtype == np.bool_:
            ok &= bool(np.all(err == 0))
        else:
            ok &= bool(np.all((err <= ATOL) | (rel <= RTOL)))
        worst = max(worst, float(np.nanmax(err)))
    return worst, ok, None


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").rstrip("\n").splitlines()
    return "\n".join(lines[-TAIL_LINES:]) if lines else "(empty)"


def run_child(tool: str, model: Model, out: Path, workdir: Path, env: dict, timeout: float) -> tuple[dict, float]:
    """One fresh process running one tool; returns (the child's result, whole process s). RuntimeError on failure."""
    result = workdir / f"{tool}.result.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", tool, str(model.onnx), str(out),
           json.dumps({k: list(v) for k, v in model.shapes.items()}), str(result)]
    log = workdir / f"{tool}.log"
    with open(log, "wb") as f:  # a file, not a pipe: nothing reads a pipe while we wait
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                  env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {timeout:.0f} s\ncommand: {shlex.join(cmd)}") from None
        process_s = time.perf_counter() - start
    if proc.returncode != 0 or not result.is_file():
        last = next((line for line in reversed(_tail(log).splitlines()) if line.strip()), "")
        raise RuntimeError(f"exited with status {proc.returncode}: {last.strip()[:300]}\ncommand: {shlex.join(cmd)}\n"
                           f"--- output (last {TAIL_LINES} lines) ---\n{_tail(log)}")
    return json.loads(result.read_text()), process_s


def bench_model(model: Model, runs: int, workdir: Path, env: dict, seed: int, timeout: float) -> dict:
    import onnx

    workdir.mkdir(parents=True, exist_ok=True)
    original = onnx.load(str(model.onnx))
    nodes, transposes = count_nodes(original)
    results = {tool: ToolResult(tool) for tool in TOOLS}
    outs = {tool: workdir / f"{tool}.onnx" for tool in TOOLS}
    for i in range(runs):
        order = TOOLS[i % len(TOOLS):] + TOOLS[:i % len(TOOLS)]
        for tool in order:
            r = results[tool]
            if r.error:
                continue
            try:
                child, process_s = run_child(tool, model, outs[tool], workdir, env, timeout)
            except RuntimeError as e:
                r.error = str(e)
                print(f"  [{i + 1}/{runs}] {tool:<10} FAILED: {str(e).splitlines()[0]}", flush=True)
                continue
            seconds = child["seconds"]
            r.seconds.append(seconds)
            r.process_s.append(process_s)
            if child["modules_imported"]:
                r.late_imports = sorted(set(r.late_imports) | set(child["late_modules"]))
            print(f"  [{i + 1}/{runs}] {tool:<10} {seconds:8.3f} s  (process {process_s:6.2f} s)", flush=True)

    feed = seeded_feed(original, model.shapes, seed)
    try:
        reference = run_onnx(model.onnx, feed)
    except Exception as e:  # onnxruntime raises its own exception types
        reference, ref_error = None, f"onnxruntime cannot run the unoptimized model: {str(e).splitlines()[0]}"
    for tool, r in results.items():
        if r.error:
            r.verdict = "FAILED"
            continue
        r.nodes, r.transposes = count_nodes(onnx.load(str(outs[tool])))
        if reference is None:
            r.error = ref_error
            continue
        try:
            r.max_abs_err, r.outputs_ok, problem = compare(reference, run_onnx(outs[tool], feed))
            r.verdict = "ok" if r.outputs_ok else "MISMATCH"
        except Exception as e:  # the tool wrote a model onnxruntime cannot run: a result worth showing
            r.outputs_ok, r.verdict = False, "NOT RUN"
            problem = f"onnxruntime cannot run its output: {str(e).splitlines()[0][:300]}"
        if problem:
            r.error = problem

    ours = results["ours"]
    ratios = {}
    for peer in PEERS:
        p = results[peer]
        ratios[peer] = {
            "nodes": ours.nodes / p.nodes if ours.nodes is not None and p.nodes else None,
            "time": ours.median_s / p.median_s if ours.median_s and p.median_s else None,
        }
    return {"model": model.name, "onnx": str(model.onnx), "input_shapes": {k: list(v) for k, v in model.shapes.items()},
            "input": {"nodes": nodes, "transposes": transposes},
            "tools": {t: {**asdict(r), "median_s": r.median_s} for t, r in results.items()},
            "ratios_ours_over": ratios}


def _fmt(v, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}{spec}}"


def print_row_table(row: dict) -> None:
    shapes = ", ".join(f"{k}:{'x'.join(map(str, v)) or 'scalar'}" for k, v in row["input_shapes"].items())
    print(f"\n{row['model']}  ({shapes})")
    header = (f"{'tool':<12}{'nodes':>7}{'Transpose':>11}{'median s':>10}{'min s':>9}{'max abs err':>13}"
              f"{'outputs':>10}")
    print(header)
    print("-" * len(header))
    inp = row["input"]
    print(f"{'(input)':<12}{inp['nodes']:>7}{inp['transposes']:>11}")
    for tool in TOOLS:
        r = row["tools"][tool]
        mins = min(r["seconds"]) if r["seconds"] else None
        verdict = r["verdict"]
        print(f"{tool:<12}{_fmt(r['nodes'], 'd', 7)}{_fmt(r['transposes'], 'd', 11)}{_fmt(r['median_s'], '.3f', 10)}"
              f"{_fmt(mins, '.3f', 9)}{_fmt(r['max_abs_err'], '.2e', 13)}{verdict:>10}")
    for peer in PEERS:
        q = row["ratios_ours_over"][peer]
        nodes = "-" if q["nodes"] is None else f"{q['nodes']:.2f}x"
        t = "-" if q["time"] is None else f"{q['time']:.2f}x"
        print(f"ours/{peer:<11} nodes {nodes:>7}   time {t:>7}")
    for tool in TOOLS:
        err, late = row["tools"][tool]["error"], row["tools"][tool]["late_imports"]
        if err:
            print(f"  {tool}: {err.splitlines()[0]}")
        if late:
            print(f"  {tool}: note: its timed call imported modules ({', '.join(late)}, ...): "
                  "their import time is in its time")


def fixture_models(names: list[str], workdir: Path, batch: int) -> list[Model]:
    import onnx

    models = []
    for name, path, given in benchlib.export_fixtures(names, workdir):
        inputs = {vi.name for vi in onnx.load(str(path)).graph.input}
        models.append(Model(name, path, resolve_shapes(onnx.load(str(path)),
                                                       {k: v for k, v in given.items() if k in inputs}, batch, name)))
    return models


def path_model(path: Path, workdir: Path, given: Shapes, batch: int, name: str | None = None) -> Model:
    import onnx

    name = name or (path.stem if path.suffix == ".onnx" else path.name)
    if path.suffix == ".onnx":
        onnx_path = path
    elif (path / "saved_model.pb").is_file():
        from compiler.api import export_model

        print(f"exporting {path} ...", flush=True)
        onnx_path = export_model(path, workdir / f"{name}.onnx").path
    else:
        raise BadInput(f"{path} is neither an .onnx file nor a SavedModel directory; fix: pass one of those")
    model = onnx.load(str(onnx_path))
    inputs = {vi.name for vi in model.graph.input}
    return Model(name, onnx_path, resolve_shapes(model, {k: v for k, v in given.items() if k in inputs}, batch, name))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(*argv[1:])

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path, help="extra models: .onnx files or SavedModel directories")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool and model (default: 3)")
    benchlib.model_args(ap, "--mobilenet and MODEL arguments")
    ap.add_argument("--mobilenet", type=Path, metavar="DIR",
                    help="also a random-weight Keras MobileNetV2 SavedModel at DIR (made there if missing)")
    ap.add_argument("--input-shapes", metavar="NAME:DxD,...", help="shapes for the MODEL arguments' inputs")
    ap.add_argument("--batch", type=int, default=1, help="size for a dynamic batch dimension (default: 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the check's random inputs (default: 0)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one run may take (default: 600)")
    a = ap.parse_args(argv)
    if a.batch < 1:
        ap.error("--batch must be at least 1")
    env = benchlib.checked_args(ap, a)
    from compiler.config import parse_shapes
    from compiler.errors import ConfigError

    try:
        given = parse_shapes(a.input_shapes)
    except ConfigError as e:
        ap.error(str(e))
    meta = benchlib.header(VERSIONED_PACKAGES, f"{a.runs} runs per tool, each a fresh process, timing the call "
                                               "alone (imports excluded)")

    with benchlib.workspace(a.workdir, "bench-passes-") as workdir:
        models: list[Model] = []
        try:
            if not a.no_fixtures:
                models += fixture_models(benchlib.fixture_names(a.fixtures), workdir / "exported", a.batch)
            if a.mobilenet:
                if not a.mobilenet.exists():
                    print(f"making MobileNetV2 at {a.mobilenet} ...", flush=True)
                    subprocess.run([sys.executable, str(REPO_ROOT / "scripts/bench/make_mobilenetv2.py"),
                                    str(a.mobilenet)], check=True, env=env)
                models.append(path_model(a.mobilenet.resolve(), workdir / "exported", {}, a.batch, "mobilenetv2"))
            for p in a.models:
                models.append(path_model(p.resolve(), workdir / "exported", given, a.batch))
        except BadInput as e:
            print(f"error: bench: {e}", file=sys.stderr)
            return 2
        if not models:
            ap.error("no models: drop --no-fixtures, or give --mobilenet or MODEL arguments")

        rows = []
        for m in models:
            print(f"\n== {m.name}", flush=True)
            rows.append(bench_model(m, a.runs, workdir / "runs" / m.name, env, a.seed, a.timeout))

    print(f"\nresults: medians of {a.runs} run(s) per tool; ratio = ours / peer (below 1: ours smaller or faster); "
          f"outputs checked against the unoptimized model with onnxruntime (atol {ATOL:g} or rtol {RTOL:g})")
    for row in rows:
        print_row_table(row)

    ours_bad = [r["model"] for r in rows if r["tools"]["ours"]["error"] or not r["tools"]["ours"]["outputs_ok"]]
    peers_bad = [f"{t} on {r['model']}" for r in rows for t in PEERS
                 if r["tools"][t]["error"] or not r["tools"][t]["outputs_ok"]]
    if peers_bad:
        print(f"\nnote: peer failures or mismatches (results, not benchmark errors): {', '.join(peers_bad)}")
    return benchlib.finish(a.json, {
        "runs_per_tool": a.runs, "seed": a.seed, "tolerance": {"atol": ATOL, "rtol": RTOL},
        "timing": "per run a fresh process; seconds = the tool's call alone (imports excluded), "
                  "process_s = the whole child",
        **meta, "rows": rows}, ours_bad, "our passes failed or changed the outputs on")


if __name__ == "__main__":
    sys.exit(main())
