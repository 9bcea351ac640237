"""Corpus helpers for bounded evaluation: a CLI run under a memory limit, and the no-library-logs check."""
from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading

from corpus import Outcome, cli_env

# onnxruntime's logger ("2026-01-01 10:00:00.1 [E:onnxruntime:, ...]"), its source paths, Polygraphy's
# "[W] ..." / "[E] ..." / "[!] ..." prefixes and graphsurgeon's warnings.
LIBRARY_LOG = re.compile(r"\[[EWIV]:onnxruntime|onnxruntime_src/|^\s*\[[EWIV!]\] |Polygraphy|onnx_graphsurgeon",
                         re.MULTILINE)


def assert_no_library_logs(result: Outcome) -> None:
    """No onnxruntime/Polygraphy log line on the terminal without --debug (the one error line may quote one)."""
    for stream in (result.out, "\n".join(line for line in result.err.splitlines() if not line.startswith("error: "))):
        found = LIBRARY_LOG.search(stream)
        assert found is None, stream[max(0, found.start() - 300):found.end() + 300]


def limited_cli(*args, memory: int = 3 << 30, timeout: float = 120) -> tuple[Outcome, int]:
    """``python -m compiler ARGS`` with its address space limited to ``memory`` bytes (so a case that tries a
    huge allocation cannot take the machine down); returns what it did and its peak RSS in bytes.

    A run past ``timeout`` is killed and reported as exit code -9 (a hang)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "compiler", *map(str, args)], env=cli_env(),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True, preexec_fn=limit)
        timer = threading.Timer(timeout, lambda: os.kill(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        return Outcome(proc.returncode, out.read(), err.read()), usage.ru_maxrss * 1024
