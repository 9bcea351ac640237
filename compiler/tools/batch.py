"""Batch runs over a project file: every model compiled in its own process, checked, indexed; incremental.

    python -m compiler batch [FILE] [--jobs N] [--only a,b] [--executor local|ray] [--force] [--triton-repo DIR]

Each model runs as `python -m compiler compile ...` (then `check` when it has a golden, then `bench` for its
latency) in a child process with an address-space limit (`memory_mib`, set in the child before it starts) and
a wall-clock limit (`timeout_s`; the child's whole process group is killed), so a crash, a hang or running out
of memory fails that model only. A worker writes into a fresh directory; the driver moves it into
`build/<name>/` with `state.json` (the content hash of the model's inputs and its result) when the model
finishes, so a run that is killed resumes where it stopped, and a model whose inputs hash the same as its last
successful build is skipped. `build/index.json`, `build/index.html` and `build/junit.xml` list every model.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, triton
from ..artifacts import content_sha256, replace_dir, write_text_atomic
from ..errors import ALL_ERRORS, ConfigError, OutputError, Terminated
from .html_report import render_batch, write_html
from ..project import ModelSpec, Project
from ..report import versions

ENGINE, REPORT, HTML, STATE = "model.engine", "report.json", "report.html", "state.json"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the directory holding compiler/ and passes/
_STAGE_OF_EXIT = {cls.exit_code: cls.stage for cls in ALL_ERRORS}
_PR_SET_PDEATHSIG = 1
LIMITS = ("timeout_s", "memory_mib")
# What a child under RLIMIT_AS says when a mapping is refused (Python, C++, the dynamic loader, libc)
_OOM_SIGNS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "out of memory", "failed to map segment")


@dataclass(frozen=True)
class Job:
    """What a worker needs to build one model: plain data, so it pickles to a Ray worker."""

    name: str
    model: str
    argv: tuple[str, ...]
    root: str
    golden: str | None
    timeout_s: float
    memory_mib: int | None  # None: no address-space limit
    hash: str
    gpu: bool = False  # a TensorRT build: a Ray task asks for a GPU; no address-space limit (CUDA reserves more)
    python: str = sys.executable
    pythonpath: str = str(_PACKAGE_ROOT)


@dataclass(frozen=True)
class Options:
    jobs: int = 1
    only: str | None = None
    executor: str = "local"
    ray_address: str | None = None
    force: bool = False
    triton_repo: Path | None = None
    build_dir: Path | None = None  # default: build/ beside the project file


# ---------------------------------------------------------------------------------------------------- hashing


def tool_digest() -> str:
    """The compiler's own code: a change to it (not only to its version number) rebuilds every model."""
    h = hashlib.sha256(__version__.encode())
    for package in ("compiler", "passes"):
        for path in sorted((_PACKAGE_ROOT / package).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".csv"):
                h.update(str(path.relative_to(_PACKAGE_ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def input_hash(spec: ModelSpec, toolchain: dict) -> str:
    """Content hash of everything a build reads: model files, data, golden, settings, tool and library versions."""
    settings = {k: v for k, v in spec.settings.items() if k not in LIMITS}  # limits do not change what is built
    h = hashlib.sha256(json.dumps({"settings": settings, "argv": spec.argv, "toolchain": toolchain},
                                  sort_keys=True, default=str).encode())
    for path in spec.inputs:
        h.update(b"\0input\0" + content_sha256(path).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------- worker


def _limits(memory_mib: int | None):
    def apply():  # runs in the child between fork and exec
        if sys.platform.startswith("linux"):  # die with the thread that started it (a killed driver or Ray worker)
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if memory_mib:  # RLIMIT_AS: what the kernel refuses to map, so the child fails fast with MemoryError
            limit = memory_mib << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run_limited(cmd: list[str], job: Job, log: Path, running: set | None = None,
                stdout: Path | None = None) -> tuple[int | None, float]:
    """Run ``cmd`` in its own process group under the job's limits, stderr (and stdout unless ``stdout`` names a
    file) into ``log``; (exit code, or None when it was killed at the time limit; seconds)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (job.pythonpath, os.environ.get("PYTHONPATH"))
                                                      if p))
    start = time.perf_counter()
    with open(log, "ab") as err, open(stdout or os.devnull, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=job.root, env=env, stdout=out if stdout else err, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_limits(None if job.gpu else job.memory_mib))
        if running is not None:
            running.add(proc)
        try:
            rc = proc.wait(timeout=job.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc = None
        finally:
            if running is not None:
                running.discard(proc)
    return rc, time.perf_counter() - start


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_job(job: Job, workdir: Path, running: set | None = None) -> dict:
    """Build one model into ``workdir``: compile, then check against its golden, then time the engine."""
    workdir = Path(workdir)
    cli = [job.python, "-m", "compiler"]
    compile_cmd = cli + ["compile", job.model, str(workdir / ENGINE), "--report", str(workdir / REPORT),
                         "--html", str(workdir / HTML), "--quiet", *job.argv]
    rc, seconds = run_limited(compile_cmd, job, workdir / "compile.log", running)
    result = _compile_result(job, workdir, rc)
    if result["status"] == "passed" and job.golden:
        check_cmd = cli + ["check", str(workdir / ENGINE), "--golden", job.golden, "--json",
                           "--junit", str(workdir / "check.xml"), "--html", str(workdir / "check.html")]
        rc_check, check_s = run_limited(check_cmd, job, workdir / "check.log", running, workdir / "check.json")
        seconds += check_s
        result["check"] = _check_result(job, workdir, rc_check)
        if not result["check"]["passed"]:
            result.update(status="failed", stage=result["check"]["stage"], exit_code=rc_check,
                          error=result["check"]["error"])
    if result["status"] == "passed":
        result["latency_ms"], result["latency_note"] = _latency(job, workdir, running)
    result["seconds"] = round(seconds, 3)
    return result


def _last_error(log: Path) -> str | None:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    errors = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
    return errors[-1] if errors else (lines[-1][:300] if lines else None)


def _failure(job: Job, rc: int | None, log: Path) -> tuple[str, str]:
    """(stage, one line) for a child that did not exit 0."""
    if rc is None:
        return "timeout", f"timeout: killed after {job.timeout_s:g} s (timeout_s); fix: raise timeout_s for this model"
    text = log.read_text(errors="replace") if log.exists() else ""
    if rc < 0:
        name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
        return "crash", f"crash: the compiler process died of {name}; fix: see {log.name}, and report it"
    if job.memory_mib and not job.gpu and any(sign in text for sign in _OOM_SIGNS):
        return "memory", (f"memory: ran out of memory under memory_mib = {job.memory_mib}; "
                          "fix: raise memory_mib for this model (0: no limit)")
    return _STAGE_OF_EXIT.get(rc, "internal"), _last_error(log) or f"exit code {rc}"


def _compile_result(job: Job, workdir: Path, rc: int | None) -> dict:
    report = _read_json(workdir / REPORT) or {}
    engine = report.get("engine") or {}
    seams = [{"seam": s["seam"], "passed": s["passed"], "max_abs": _worst(s["outputs"], "max_abs"),
              "max_rel": _worst(s["outputs"], "max_rel")} for s in report.get("validation", [])]
    result = {"name": job.name, "status": "passed" if rc == 0 else "failed", "stage": None, "exit_code": rc,
              "error": None, "hash": job.hash, "backend": report.get("backend"), "format": engine.get("format"),
              "precision": (report.get("precision") or {}).get("mode"), "size_bytes": engine.get("bytes"),
              "seams": seams, "check": None, "latency_ms": None, "latency_note": None,
              "engine": ENGINE if rc == 0 else None, "report": HTML if (workdir / HTML).exists() else None}
    if rc != 0:
        stage, line = _failure(job, rc, workdir / "compile.log")
        reported = (report.get("error") or {}).get("stage") if stage not in ("timeout", "crash", "memory") else None
        result.update(stage=reported or stage, error=line)
    return result


def _worst(outputs: dict, key: str) -> float | None:
    values = [o[key] for o in outputs.values() if o.get(key) is not None]
    return max(values) if values else None


def _check_result(job: Job, workdir: Path, rc: int | None) -> dict:
    data = _read_json(workdir / "check.json") or {}
    if rc in (0, 1) and data:
        bad = [o["name"] for o in data.get("outputs", []) if not o["passed"]]
        return {"passed": rc == 0, "stage": "check", "regressed": bad,
                "error": None if rc == 0 else f"check: REGRESSION in {', '.join(bad)} against {job.golden}"}
    stage, line = _failure(job, rc, workdir / "check.log")
    return {"passed": False, "stage": stage, "regressed": [], "error": line}


def _latency(job: Job, workdir: Path, running: set | None) -> tuple[float | None, str | None]:
    """p50 latency (ms) of the built engine on seeded random inputs; a failure here is a note, not a failure."""
    cmd = [job.python, "-m", "compiler", "bench", str(workdir / ENGINE), "--json", "--warmup", "3",
           "--iterations", "20"]
    rc, _ = run_limited(cmd, job, workdir / "bench.log", running, workdir / "bench.json")
    data = _read_json(workdir / "bench.json") if rc == 0 else None
    if data is None:
        return None, f"bench: {_failure(job, rc, workdir / 'bench.log')[1]}"
    return round(data["latency_ms"]["p50"], 4), None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------- executors


class LocalExecutor:
    """Up to ``jobs`` models at once on this machine, each in its own child processes (threads only wait)."""

    def __init__(self, jobs: int):
        self.jobs, self.running = jobs, set()

    def gpu_for(self, backend: str) -> bool:
        from ..backends import resolve_backend

        return resolve_backend(backend)[0] == "tensorrt"

    def run(self, jobs: list[Job], build_dir: Path):
        """Yield (job, result, workdir) as each job finishes; if the driver stops, kill every child process
        group and remove the unfinished directories."""
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs)
        futures = {}
        try:
            for job in jobs:
                workdir = Path(tempfile.mkdtemp(prefix=f".{job.name}.partial-", dir=build_dir))
                futures[pool.submit(run_job, job, workdir, self.running)] = (job, workdir)
            for done in concurrent.futures.as_completed(futures):
                job, workdir = futures.pop(done)
                yield job, done.result(), workdir
        finally:
            for future in futures:
                future.cancel()
            for proc in list(self.running):
                _kill_group(proc)
            pool.shutdown(wait=True)
            for _, workdir in futures.values():
                shutil.rmtree(workdir, ignore_errors=True)


def _ray_build(job: Job) -> tuple[dict, dict[str, bytes]]:
    """A Ray task: build in a scratch directory on the worker; the files travel back with the result."""
    with tempfile.TemporaryDirectory(prefix=f"tf2trt-{job.name}-") as tmp:
        result = run_job(job, Path(tmp))
        files = {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}
    return result, files


class RayExecutor:
    """Each model a Ray task asking for what its backend needs: a GPU for TensorRT builds, one CPU otherwise."""

    def __init__(self, address: str | None, jobs: int):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray, which is not installed",
                              "pip install 'tf2trt-compiler[ray]' (or use --executor local)") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=None if address else jobs, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        self.gpus = ray.cluster_resources().get("GPU", 0)

    def gpu_for(self, backend: str) -> bool:
        return backend == "tensorrt" or (backend == "auto" and self.gpus > 0)

    def run(self, jobs: list[Job], build_dir: Path):
        ray = self.ray
        task = ray.remote(_ray_build)
        pending = {task.options(num_cpus=1, num_gpus=1 if job.gpu else 0).remote(job): job
                   for job in jobs}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                workdir = Path(tempfile.mkdtemp(prefix=f".{job.name}.partial-", dir=build_dir))
                try:
                    result, files = ray.get(ready[0])
                except (ray.exceptions.RayError, OSError) as e:  # the worker died (OOM killer, lost node): one model
                    result, files = _compile_result(job, workdir, None), {}
                    result.update(stage="crash", exit_code=None, error=(
                        f"crash: the Ray task failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}); "
                        "fix: see the Ray worker's log (ray logs), or raise the node's memory"))
                for rel, data in files.items():
                    (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
                    (workdir / rel).write_bytes(data)
                yield job, result, workdir
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


# ---------------------------------------------------------------------------------------------------- driver


def _previous(build_dir: Path, name: str) -> dict | None:
    state = _read_json(build_dir / name / STATE)
    return state if state and (build_dir / name / ENGINE).is_file() else None


def _finish(build_dir: Path, name: str, workdir: Path, result: dict) -> None:
    """Move the model's fresh directory into build/<name>/ with its state: the step that makes it count."""
    write_text_atomic(workdir / STATE, json.dumps(result, indent=2) + "\n", "batch state")
    replace_dir(workdir, build_dir / name)


def _clean_partials(build_dir: Path) -> None:
    for stale in build_dir.glob(".*.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in build_dir.glob(".*.old"):
        shutil.rmtree(stale, ignore_errors=True)


def _job(spec: ModelSpec, digest: str, gpu: bool) -> Job:
    return Job(name=spec.name, model=str(spec.path), argv=spec.argv, root=str(spec.root),
               golden=str(spec.golden) if spec.golden else None, timeout_s=spec.timeout_s,
               memory_mib=spec.memory_mib, hash=digest, gpu=gpu)


def _executor(options: Options):
    if options.executor == "ray":
        return RayExecutor(options.ray_address, options.jobs)
    if options.executor != "local":
        raise ConfigError(f"unknown executor '{options.executor}'", "use --executor local or ray")
    return LocalExecutor(options.jobs)


def _interrupt(signum, frame):
    raise Terminated()  # SIGTERM unwinds like Ctrl-C and exits 143 (cli.interruption)


def run_batch(project: Project, options: Options = Options(), log=None) -> dict:
    """Build the selected models of ``project``; returns the index (``index["passed"]`` is the gate). SIGTERM
    stops it as Ctrl-C does: running children are killed, unfinished directories removed, finished models kept."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return _run(project, options, log)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(project: Project, options: Options, log) -> dict:
    if options.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {options.jobs}", "pass --jobs 1 or more")
    started = time.time()
    specs = project.select(options.only)
    build_dir = Path(options.build_dir or project.file.parent / "build").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    _clean_partials(build_dir)
    toolchain = {"tool": tool_digest(), "versions": versions()}
    progress = Progress(len(specs), log or (lambda line: print(line, file=sys.stderr, flush=True)))
    results, todo = {}, []
    executor = None
    for spec in specs:
        digest = input_hash(spec, toolchain)
        state = _previous(build_dir, spec.name)
        if not options.force and state and state.get("hash") == digest and state.get("status") == "passed":
            results[spec.name] = dict(state, status="unchanged")
            progress.done(results[spec.name])
            continue
        executor = executor or _executor(options)
        todo.append(_job(spec, digest, executor.gpu_for(spec.backend)))
    if todo:
        for job, result, workdir in executor.run(todo, build_dir):
            _finish(build_dir, job.name, workdir, result)
            results[job.name] = result
            progress.done(result)
            write_index(build_dir, project, [results[s.name] for s in specs if s.name in results], started)
    ordered = [results[s.name] for s in specs]
    if options.triton_repo is not None:
        _triton(options.triton_repo, build_dir, ordered, progress.emit)
    return write_index(build_dir, project, ordered, started)


def _triton(repo: Path, build_dir: Path, results: list[dict], emit) -> None:
    """The Triton repository entries of the models that passed; one that cannot be written is a warning there."""
    for r in results:
        if r["status"] not in ("passed", "unchanged"):
            continue
        try:
            r["triton"] = str(triton.write_model(repo, r["name"], build_dir / r["name"] / ENGINE,
                                                 _read_json(build_dir / r["name"] / REPORT)))
        except OutputError as e:
            r["triton"], r["triton_error"] = None, e.one_line()
            emit(f"WARNING: {r['name']}: no Triton entry: {e.one_line()}")


def write_index(build_dir: Path, project: Project, results: list[dict], started: float) -> dict:
    """build/index.json, index.html and junit.xml for the models finished so far."""
    counts = {s: sum(r["status"] == s for r in results) for s in ("passed", "unchanged", "failed")}
    index = {"project": str(project.file), "build_dir": str(build_dir), "seconds": round(time.time() - started, 3),
             "passed": counts["failed"] == 0 and len(results) > 0, "counts": counts, "models": results}
    write_text_atomic(build_dir / "index.json", json.dumps(index, indent=2) + "\n", "batch index")
    write_html(build_dir / "index.html", render_batch(index))
    write_text_atomic(build_dir / "junit.xml", junit_xml(index), "JUnit report")
    return index


def junit_xml(index: dict) -> str:
    """One testcase per model; a failed model is a failure naming its stage and its one-line error."""
    from xml.sax.saxutils import escape, quoteattr

    cases = []
    for r in index["models"]:
        head = f'  <testcase classname="tf2trt-batch" name={quoteattr(r["name"])} time="{r.get("seconds") or 0:.3f}"'
        if r["status"] == "failed":
            message = quoteattr(r["error"] or r["stage"] or "failed")
            cases.append(f'{head}>\n    <failure message={message} type={quoteattr(r["stage"] or "failed")}>'
                         f"{escape(json.dumps(r))}</failure>\n  </testcase>")
        elif r["status"] == "unchanged":
            cases.append(f"{head}>\n    <system-out>unchanged since the last successful build</system-out>\n"
                         "  </testcase>")
        else:
            cases.append(head + " />")
    failures = index["counts"]["failed"]
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="tf2trt-batch" tests="{len(cases)}" '
            f'failures="{failures}" errors="0" time="{index["seconds"]:.3f}">\n' + "\n".join(cases)
            + "\n</testsuite>\n")


class Progress:
    """One line per finished model, with a bar: `[ 3/12] ######------ name  passed  12.3 s  ...`."""

    WIDTH = 20

    def __init__(self, total: int, emit):
        self.total, self.count, self.emit, self.lock = total, 0, emit, threading.Lock()

    def done(self, r: dict) -> None:
        with self.lock:
            self.count += 1
            filled = self.WIDTH * self.count // max(self.total, 1)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            why = f"  {r['error']}" if r["status"] == "failed" else ""
            self.emit(f"[{self.count:>{len(str(self.total))}}/{self.total}] {bar} {r['name']}  {r['status']}  "
                      f"{r.get('seconds') or 0:.1f} s{why}")


def summary_table(index: dict) -> str:
    """The final table, one row per model."""
    def cell(r, key, fmt):
        return "—" if r.get(key) is None else format(r[key], fmt)

    rows = [[r["name"], r["status"], r["stage"] or "", cell(r, "seconds", ".1f"), cell(r, "latency_ms", ".3f"),
             cell(r, "size_bytes", "d"), r.get("precision") or "", r.get("backend") or ""] for r in index["models"]]
    headers = ["model", "status", "stage", "seconds", "p50 ms", "bytes", "precision", "backend"]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [headers] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    c = index["counts"]
    lines.append(f"\nbatch: {c['passed']} passed, {c['unchanged']} unchanged, {c['failed']} failed "
                 f"in {index['seconds']:.1f} s; index: {Path(index['build_dir']) / 'index.html'}")
    return "\n".join(lines)
