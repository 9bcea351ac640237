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

from .errors import OutputError, RunError
from .common.io_change import Interface

# What an artifact is, recognised from its content, never its name: a TensorRT plan starts with ``ftrt``; our
# onnxruntime artifact is onnxruntime's own ORT format, a flatbuffer whose file identifier ``ORTM`` sits at bytes
# 4-8; an ONNX model is a protobuf ``ModelProto`` (recognised by parsing).
TENSORRT_PLAN = "tensorrt-plan"
ORT_FORMAT = "onnxruntime-ort"
ONNX_MODEL = "onnx"

_TRT_MAGIC = b"ftrt"
_ORT_IDENT = b"ORTM"


def shape_text(shape) -> str:
    """``[1, ?, 3]``: a shape with its dynamic dimensions as ``?``."""
    return "[" + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in shape) + "]"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64", ...
    shape: tuple[int | str | None, ...]  # int = static, str/None = dynamic

    @property
    def dynamic_dims(self) -> list[int]:
        return [i for i, d in enumerate(self.shape) if not isinstance(d, int) or d < 0]

    def shape_text(self) -> str:
        return shape_text(self.shape)

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
    change: Interface = field(default_factory=Interface)  # ONNX: the interface change it records (common/io_change.py)
    tag: str = "serve"  # SavedModels: the MetaGraph tag it was read with

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
    """An ONNX file a stage wrote, with what the next stages need of it, so none reads it back: its IO, its op
    histogram and how its interface differs from the exported model's."""

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    ops: dict[str, int] = field(default_factory=dict)
    change: Interface = field(default_factory=Interface)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(path=self.path, format=ONNX_MODEL, signature=None, inputs=self.inputs, outputs=self.outputs,
                         ops=self.ops, change=self.change)


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


def detect_format(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"artifact '{path}' does not exist or is not a file", "pass the file written by compile/build")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise RunError(f"artifact '{path}' is empty", "pass the file written by compile/build, or rebuild it")
    if head[:4] == _TRT_MAGIC:
        return TENSORRT_PLAN
    if len(head) == 8 and head[4:8] == _ORT_IDENT:
        return ORT_FORMAT
    try:
        import onnx  # heavy (2 s): only when the magic bytes say nothing

        model = onnx.load(str(path), load_external_data=False)
        if model.graph.node or model.graph.output:
            return ONNX_MODEL
    except Exception:  # any parse failure means "not ONNX"; we say what it is not, below
        pass
    raise RunError(f"'{path}' is not a TensorRT plan, an onnxruntime ORT artifact or an ONNX model "
                   f"(first bytes: {head!r})", "pass an engine built by this compiler, or rebuild it")
