"""What one stage hands the next: paths on disk plus the tensor specs read from them.

Files are the seam between stages, so any stage can be re-run alone from the
CLI. ``atomic_output`` is the one way this package writes a user-visible file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OutputError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64", ...
    shape: tuple[int | str | None, ...]  # int = static, str/None = dynamic
    unknown_rank: bool = False  # the model declares no rank; ``shape`` is then (None,), fully dynamic

    @property
    def dynamic_dims(self) -> list[int]:
        return [i for i, d in enumerate(self.shape) if not isinstance(d, int) or d < 0]

    def shape_text(self) -> str:
        return "[" + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in self.shape) + "]"

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype,
                "shape": [d if isinstance(d, int) and d >= 0 else None for d in self.shape]}


@dataclass(frozen=True)
class ModelInfo:
    """What inspect found: the chosen signature's IO and the graph's op histogram."""

    path: Path
    format: str  # "saved_model" | "onnx"
    signature: str | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops: dict[str, int]
    signatures: dict[str, dict] = field(default_factory=dict)  # all signatures, for listing
    tags: tuple[tuple[str, ...], ...] = ()
    safety: dict | None = None  # SavedModels: the unsafe-op scan's verdict (frontend/scan.py)
    interface: dict = field(default_factory=dict)  # ONNX: the interface change it records (interface.py)

    def to_json(self) -> dict:
        return {
            "path": str(self.path), "format": self.format, "signature": self.signature,
            "tags": [list(t) for t in self.tags],
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "signatures": self.signatures, "safety": self.safety,
            "nodes": sum(self.ops.values()),
            "ops": dict(sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        }


@dataclass(frozen=True)
class OnnxArtifact:
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class EngineArtifact:
    path: Path
    backend: str  # "tensorrt" | "onnxruntime"
    format: str  # "tensorrt-plan" | "onnxruntime-ort"
    summary: dict = field(default_factory=dict)


def check_writable(path: Path, what: str) -> None:
    """Fail early, before minutes of work, if ``path`` cannot be created."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{what} path '{path}' is a directory", "give a file path, e.g. out/model.engine")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {what} '{path}': '{parent}' is a file, not a directory",
                          "choose a path inside a directory")
    if not parent.is_dir():
        raise OutputError(f"cannot write {what} '{path}': directory '{parent}' does not exist",
                          f"create it first (mkdir -p {parent}) or choose another path")
    try:  # os.access is not enough (read-only mounts, /proc): really create a file
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write {what} '{path}': {e.strerror or e}",
                          "choose a writable location") from None


@contextlib.contextmanager
def atomic_output(path: Path, what: str = "output"):
    """Yield a temporary path beside ``path``; rename it into place only on success.

    A failed or interrupted writer leaves nothing at ``path`` (and removes its
    temporary file), so a half-written engine can never be mistaken for one.
    """
    path = Path(path)
    check_writable(path, what)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {what} '{path}': {e.strerror or e}", "choose a writable location") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes the file owner-only; give it the mode a plain open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, what: str = "output") -> None:
    with atomic_output(path, what) as tmp:
        tmp.write_text(text)
