"""No output ever replaces an input (exit 8, before any work), and SIGINT/SIGTERM leave no partial output and no
temp directory (exit 130/143 with one line); a stale ``.partial`` left by a SIGKILLed run confuses no later run."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corpus import ROOT, Outcome, assert_clean_failure, cli, cli_env, leftovers, snapshot
from models import add_model, save

CNN = ROOT / "fixtures" / "cnn_nhwc"


def _digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


@pytest.fixture
def inputs(workdir) -> dict[str, Path]:
    """A fresh model (and a golden, a data directory, a SavedModel copy) per case: cases may try to replace them."""
    model = save(add_model(), workdir / "m.onnx")
    data = workdir / "data"
    data.mkdir()
    np.savez(data / "0.npz", x=np.zeros((1, 4), np.float32))
    return {"model": model, "data": data, "dir": workdir}


def _golden(workdir: Path, model: Path) -> Path:
    result = cli("record", model, "--golden", workdir / "golden", "--samples", "1")
    assert result.code == 0, result.err
    return workdir / "golden"


def _saved_model(workdir: Path) -> Path:
    copy = workdir / "sm"
    shutil.copytree(CNN, copy)
    return copy


def _hardlink(w: Path, m: Path) -> Path:
    os.link(m, w / "linked.engine")
    return w / "linked.engine"


def _symlink(w: Path, m: Path) -> Path:
    os.symlink(m, w / "sym.engine")
    return w / "sym.engine"


def _keep_dir(w: Path, m: Path) -> Path:
    keep = w / "keep"
    keep.mkdir()
    shutil.copy(m, keep / "model.onnx")
    return keep / "model.onnx"


# case -> (args built from the inputs, the input that must survive, needles for the error line)
CASES = {
    "compile-onto-input": lambda i: ([i["model"], i["model"]], i["model"], ["engine"]),
    "build-onto-input": lambda i: (["build", i["model"], i["model"], "--backend", "onnxruntime"], i["model"], []),
    "optimize-onto-input": lambda i: (["optimize", i["model"], i["model"]], i["model"], []),
    "compile-hardlink": lambda i: ([i["model"], _hardlink(i["dir"], i["model"])], i["model"], ["hard link"]),
    "compile-symlink": lambda i: ([i["model"], _symlink(i["dir"], i["model"])], i["model"], []),
    "compile-relative-spelling": lambda i: ([i["model"], i["dir"] / "data" / ".." / "m.onnx"], i["model"], []),
    "compile-report": lambda i: ([i["model"], i["dir"] / "o.engine", "--report", i["model"]], i["model"],
                                 ["report"]),
    "compile-html": lambda i: ([i["model"], i["dir"] / "o.engine", "--html", i["model"]], i["model"], ["html"]),
    "compile-timing-cache": lambda i: ([i["model"], i["dir"] / "o.engine", "--timing-cache", i["model"]],
                                       i["model"], ["timing cache"]),
    "compile-calib-cache": lambda i: ([i["model"], i["dir"] / "o.engine", "--precision", "int8", "--calib-cache",
                                       i["model"]], i["model"], ["calibration cache"]),
    "compile-into-data-dir": lambda i: ([i["model"], i["data"] / "o.engine", "--data", i["data"]], i["data"],
                                        ["inside"]),
    "compile-keep-intermediates": lambda i: ([_keep_dir(i["dir"], i["model"]), i["dir"] / "o.engine",
                                              "--keep-intermediates", i["dir"] / "keep"], i["dir"] / "keep",
                                             ["intermediates"]),
    "compile-into-saved-model": lambda i: ([_saved_model(i["dir"]), i["dir"] / "sm" / "o.engine"], i["dir"] / "sm",
                                           ["inside"]),
    "export-into-saved-model": lambda i: (["export", _saved_model(i["dir"]), i["dir"] / "sm" / "variables" / "m.onnx"],
                                          i["dir"] / "sm", ["inside"]),
    "run-outputs-onto-model": lambda i: (["run", i["model"], "--outputs", i["model"]], i["model"], ["outputs"]),
    "record-golden-holding-model": lambda i: (["record", i["model"], "--golden", i["dir"], "--force"], i["model"],
                                              ["golden"]),
    "check-junit-into-golden": lambda i: (["check", i["model"], "--golden", _golden(i["dir"], i["model"]), "--junit",
                                           i["dir"] / "golden" / "manifest.json"], i["dir"] / "golden", ["junit"]),
    "check-html-onto-model": lambda i: (["check", i["model"], "--golden", _golden(i["dir"], i["model"]), "--html",
                                         i["model"]], i["model"], ["html"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_output_replaces_an_input(inputs, workdir, case):
    args, survivor, needles = CASES[case](inputs)
    before, listing = _digest(survivor), snapshot(workdir)
    result = cli(*args, cwd=workdir)
    assert_clean_failure(result, 8, "output", "input", *needles)
    assert _digest(survivor) == before
    assert snapshot(workdir) == listing, sorted(map(str, snapshot(workdir) ^ listing))
    assert leftovers(workdir) == []


def test_an_output_beside_the_input_is_fine(inputs, workdir):
    result = cli(inputs["model"], workdir / "m.engine", "--keep-intermediates", workdir / "keep")
    assert result.code == 0, result.err[-2000:]


# ------------------------------------------------------------------------------------------------- signals


def _start(args, workdir: Path) -> tuple[subprocess.Popen, Path]:
    log = workdir / "stderr.txt"
    proc = subprocess.Popen([sys.executable, "-m", "compiler", *map(str, args)], cwd=workdir, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    return proc, log


def _wait_for(proc, log: Path, tmpdir: Path, marker: str, timeout: float = 120) -> None:
    """Poll until the run has a temp directory and has printed ``marker`` (e.g. the export stage starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        if any(p.name.startswith("tf2trt-") for p in tmpdir.iterdir()) and marker in log.read_text():
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no temp directory and no {marker!r} within {timeout} s")


def _interrupt(proc, log: Path, sig: int) -> Outcome:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    return Outcome(proc.returncode, out, log.read_text())


def _assert_interrupted(result: Outcome, code: int, word: str, workdir: Path, out: Path) -> None:
    """Exit ``code``, one error line saying ``word``, no traceback; no temp directory, partial file or engine."""
    assert result.code == code, result.err[-2000:]
    assert "Traceback" not in result.err
    lines = result.error_lines
    assert len(lines) == 1 and word in lines[0], result.err[-2000:]
    assert list((workdir / "tmp").iterdir()) == []
    assert leftovers(workdir) == [] and not out.exists()


def test_sigterm_during_export_leaves_nothing(workdir):
    out = workdir / "out" / "model.engine"
    out.parent.mkdir()
    proc, log = _start([CNN, out], workdir)
    _wait_for(proc, log, workdir / "tmp", "» export")
    time.sleep(0.5)  # inside tf2onnx
    _assert_interrupted(_interrupt(proc, log, signal.SIGTERM), 143, "terminated", workdir, out)


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_signal_during_validation_of_an_onnx_model(inputs, workdir, sig, code, word):
    out = workdir / "o.engine"  # while validation runs, the built engine waits in a .partial beside it
    proc, log = _start([inputs["model"], out, "--val-iterations", "200000"], workdir)
    _wait_for(proc, log, workdir / "tmp", "» validate")
    _assert_interrupted(_interrupt(proc, log, sig), code, word, workdir, out)


def test_a_stale_partial_from_a_killed_run_confuses_no_later_run(inputs, workdir):
    out = workdir / "o.engine"
    proc, log = _start([inputs["model"], out, "--val-iterations", "200000"], workdir)
    _wait_for(proc, log, workdir / "tmp", "» validate")
    proc.kill()  # SIGKILL: nothing can clean up
    proc.communicate(timeout=60)
    stale = [p for p in workdir.iterdir() if p.name.endswith(".partial")]
    assert stale and all(re.fullmatch(r"\.o\.engine\.tf2trt-.+\.partial", p.name) for p in stale), stale
    result = cli(inputs["model"], out)
    assert result.code == 0, result.err[-2000:]
    assert cli("run", out).code == 0
    assert all(p.exists() for p in stale)  # not ours to guess about; README says how to remove them


def test_a_signal_lost_in_a_finalizer_is_raised_at_the_next_stage_boundary():
    """Python runs a signal handler between any two bytecodes, also inside a finalizer that gc.collect() calls
    (the export collects TensorFlow's objects, which have them), where the handler's exception is unraisable
    and lost; the CLI records the interruption and the stages raise it again (errors.raise_pending)."""
    import gc
    import os

    from compiler import cli, errors

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # bytecodes for the handler to run between
                pass

    handlers = cli._catch_signals(quiet=True)
    try:
        a, b = Finalized(), Finalized()
        a.other, b.other = b, a  # a cycle: only the collector frees it
        del a, b
        gc.collect()  # the handler raised Terminated inside __del__: nothing propagates here
        with pytest.raises(errors.Terminated):
            errors.raise_pending()
    finally:
        errors.clear_pending()
        sys.unraisablehook = sys.__unraisablehook__  # _catch_signals(quiet=True) silenced it
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
