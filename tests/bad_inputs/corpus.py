"""Shared helpers for the fault corpus (import them with `from corpus import ...`): each case runs the real CLI in its own process and asserts the promises
the README makes for bad input (one-line error naming the stage, the right exit code, no traceback, nothing
half-written).

A subprocess per case keeps signals, exit codes and stray library logging honest; the CLI starts in well under a
second when the case does not need TensorFlow.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error: ")]


def cli_env() -> dict[str, str]:
    """The environment a case runs in: this checkout first on the path, TensorFlow's C++ logging silenced."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONWARNINGS", None)
    return env


def cli(*args, cwd: Path | None = None, timeout: float = 300, stdin=subprocess.DEVNULL) -> Outcome:
    """Run ``python -m compiler ARGS`` in a fresh process and return what it did."""
    done = subprocess.run([sys.executable, "-m", "compiler", *map(str, args)], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout, stdin=stdin)
    return Outcome(done.returncode, done.stdout, done.stderr)


def assert_clean_failure(result: Outcome, code: int, stage: str, *needles: str) -> str:
    """The failure contract: exit ``code``, exactly one ``error: STAGE: ...`` line, no traceback, nothing else
    on stderr but notices; returns the error line. ``needles`` must each appear in it (case-insensitive)."""
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.err[-3000:]
    assert result.code == code, f"exit {result.code}, wanted {code}: {result.err[-2000:]}"
    lines = result.error_lines
    assert len(lines) == 1, result.err[-2000:]
    line = lines[0]
    assert line.startswith(f"error: {stage}: "), line
    for needle in needles:
        assert needle.lower() in line.lower(), (needle, line)
    return line


def snapshot(*dirs: Path) -> set[Path]:
    """Every path below ``dirs``: compare before and after a case to prove it left nothing behind."""
    return {p for d in dirs if Path(d).exists() for p in Path(d).rglob("*")}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A case's scratch directory; TMPDIR points inside it so stray temp directories are seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp_path


def leftovers(workdir: Path) -> list[Path]:
    """Temp directories or partial files the CLI left in ``workdir`` (its TMPDIR included)."""
    return sorted(p for p in workdir.rglob("*") if "tf2trt-" in p.name or p.name.endswith(".partial"))
