"""What one stage hands the next: paths on disk plus the tensor specs read from them.

Files are the seam between stages, so any stage can be re-run alone from the
CLI. ``atomic_output`` is the one way this package writes a user-visible file;
``refuse_replacing_inputs`` keeps every output off the inputs, and
``scratch_dir`` is the one way it makes a temporary directory.

Everything temporary is registered until it is removed (``remove_leftovers``
clears what an interrupted run left, on every exit path of the CLI). A file
being written is named ``.NAME.tf2trt-PID-XXXXXXXX.partial`` beside NAME; only
SIGKILL (or a power cut) can leave one, and any such file may be deleted.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OutputError, RunError
from .common.io_change import Interface

# What an artifact is, recognised from its content, never its name: a TensorRT plan starts with ``ftrt``; our
# onnxruntime artifact is onnxruntime's own ORT format, a flatbuffer whose file identifier ``ORTM`` sits at bytes
# 4-8; our OpenVINO engine starts with ``OPENVINO_MAGIC`` (then our JSON header and OpenVINO's exported blob, see
# backends/openvino.py); an ONNX model is a protobuf ``ModelProto`` (recognised by parsing).
TENSORRT_PLAN = "tensorrt-plan"
ORT_FORMAT = "onnxruntime-ort"
OPENVINO_BLOB = "openvino-blob"
ONNX_MODEL = "onnx"

_TRT_MAGIC = b"ftrt"
_ORT_IDENT = b"ORTM"
OPENVINO_MAGIC = b"tf2trtOV"  # 8 bytes: neither ``ftrt`` first nor ``ORTM`` at 4-8


def shape_text(shape) -> str:
    """``[1, ?, 3]``: a shape with its dynamic dimensions as ``?``."""
    return "[" + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in shape) + "]"


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
    backend: str  # "tensorrt" | "openvino" | "onnxruntime"
    format: str  # "tensorrt-plan" | "openvino-blob" | "onnxruntime-ort"
    summary: dict = field(default_factory=dict)


_LIVE: set[Path] = set()  # temp directories and partial files of this process, until they are removed
_DESTINATIONS: dict[Path, Path] = {}  # a partial file being written -> the path it is renamed to
_COMPANIONS: dict[Path, list] = {}  # a partial file -> [(companion written with it, the file it set aside)]


def _partial_prefix(path: Path) -> str:
    return f".{path.name}.tf2trt-{os.getpid()}-"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    _LIVE.discard(path)


def remove_leftovers() -> None:
    """Remove every temp directory and partial file this process made and has not removed yet."""
    for path in sorted(_LIVE, reverse=True):
        _remove(path)


@contextlib.contextmanager
def scratch_dir(prefix: str = "tf2trt-"):
    """A temporary directory (under TMPDIR), registered until it is removed on leaving the block."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _LIVE.add(path)
    try:
        yield path
    finally:
        _remove(path)


@contextlib.contextmanager
def partial_dir(path: Path):
    """A registered temporary directory beside ``path`` to be renamed into place; removed unless it was."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(path), suffix=".partial", dir=path.parent))
    _LIVE.add(tmp)
    try:
        yield tmp
    finally:  # renamed into place, or to be removed
        _remove(tmp) if tmp.exists() else _LIVE.discard(tmp)


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _inside(path: Path, directory: Path) -> bool:
    return directory in path.parents


def _replaces(out: Path, source: Path) -> str | None:
    """Why writing ``out`` would replace or land inside the input ``source``, or None."""
    rout, rsource = _resolved(out), _resolved(source)
    if rout == rsource:
        return f"is the input '{source}'"
    if out.exists() and source.exists() and os.path.samefile(out, source):
        return f"is a hard link to the input '{source}'"
    if source.is_dir() and _inside(rout, rsource):
        return f"lies inside the input directory '{source}'"
    if _inside(rsource, rout):
        return f"holds the input '{source}', which writing it would replace"
    return None


def refuse_replacing_inputs(inputs, outputs, containers=()) -> None:
    """Refuse (OutputError), before any work, an output that would replace an input or land inside one.

    ``inputs``: paths read (files or directories; None is skipped). ``outputs``: (what, path) of each file or
    directory written (a golden directory is replaced whole). ``containers``: (what, directory, names) for a
    directory the run writes files matching the glob patterns ``names`` into (--keep-intermediates).
    """
    sources = [Path(p) for p in inputs if p is not None]
    for what, out in outputs:
        if out is None:
            continue
        for source in sources:
            why = _replaces(Path(out), source)
            if why:
                raise OutputError(f"the {what} '{out}' {why}", "write outputs outside the inputs: choose "
                                  "another path (no output ever replaces an input)")
    for what, directory, names in containers:
        if directory is None:
            continue
        rdir = _resolved(Path(directory))
        for source in sources:
            rsource = _resolved(source)
            if source.is_dir() and (rdir == rsource or _inside(rdir, rsource)):
                raise OutputError(f"the {what} '{directory}' lies inside the input directory '{source}'",
                                  "write outputs outside the inputs: choose another directory")
            if rsource.parent == rdir and any(fnmatch.fnmatch(rsource.name, n) for n in names):
                raise OutputError(f"the {what} '{directory}' would replace the input '{source}' (it writes "
                                  f"{', '.join(names)} there)", "write outputs outside the inputs: choose another "
                                  "directory, or move the input")


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
        fd, probe = tempfile.mkstemp(prefix=_partial_prefix(path), suffix=".probe", dir=parent)
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
        fd, tmp = tempfile.mkstemp(prefix=_partial_prefix(path), suffix=".partial", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {what} '{path}': {e.strerror or e}", "choose a writable location") from None
    os.close(fd)
    tmp_path = Path(tmp)
    _LIVE.add(tmp_path)
    _DESTINATIONS[tmp_path] = path
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes the file owner-only; give it the mode a plain open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
        _LIVE.discard(tmp_path)
        if path in _DESTINATIONS:  # renamed onto an outer partial file: its companions now go with that one
            _COMPANIONS.setdefault(path, []).extend(_COMPANIONS.pop(tmp_path, []))
        _settle_companions(tmp_path, keep=True)
    except BaseException:
        _remove(tmp_path)
        _settle_companions(tmp_path, keep=False)
        raise
    finally:
        _DESTINATIONS.pop(tmp_path, None)


def companion_path(partial: Path, suffix: str) -> Path:
    """Where a file that travels with an output goes (an ONNX model's external data): beside the output's final
    path, named after it plus ``suffix``. ``partial`` is the temporary path ``atomic_output`` yielded; the file is
    written in place at once (the model names it relative to itself, and validation runs the model before it is
    renamed), so a file already there is set aside: if the output fails, the companion is removed and the old
    file restored; if it succeeds, the old one is dropped. Outside ``atomic_output``: beside ``partial``."""
    partial = Path(partial)
    dest = _DESTINATIONS.get(partial, partial)
    while dest in _DESTINATIONS:  # written into another atomic_output's partial file (the compile's engine)
        dest = _DESTINATIONS[dest]
    path = dest.with_name(dest.name + suffix)
    backup = None
    if path.exists() or path.is_symlink():
        backup = path.with_name(_partial_prefix(path) + "old")
        os.replace(path, backup)
    _COMPANIONS.setdefault(partial, []).append((path, backup))
    return path


def _settle_companions(partial: Path, keep: bool) -> None:
    for path, backup in _COMPANIONS.pop(partial, []):
        if keep:
            if backup is not None:
                backup.unlink(missing_ok=True)
            continue
        path.unlink(missing_ok=True)
        if backup is not None:
            os.replace(backup, path)


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
    if head == OPENVINO_MAGIC:
        return OPENVINO_BLOB
    try:
        import onnx  # heavy (2 s): only when the magic bytes say nothing

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # any parse failure means "not ONNX"; we say what it is not, below
        model = None
    if model is not None and (model.graph.node or model.graph.output):
        from .sandbox import check_external_data  # it imports onnx: the deploy runtime imports this module

        check_external_data(model, path)  # onnxruntime reads it from the file: it must be inside the sandbox
        return ONNX_MODEL
    raise RunError(f"'{path}' is not a TensorRT plan, an OpenVINO engine, an onnxruntime ORT artifact or an ONNX model "
                   f"(first bytes: {head!r})", "pass an engine built by this compiler, or rebuild it")


def replace_dir(new: Path, final: Path) -> None:
    """Put the finished directory ``new`` at ``final`` (its sibling), replacing what was there. Two renames: a
    reader sees the old directory or the new one, and a crash between them leaves none (never a mix)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def content_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and bytes, sorted), e.g. a SavedModel."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
