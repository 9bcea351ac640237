"""A Triton Inference Server model repository entry for a built engine: `DIR/<name>/config.pbtxt` + `1/model.<ext>`.

The platform follows the engine's format (recognised by content when it was built, recorded in the report):
a TensorRT plan is `tensorrt_plan` (`model.plan`), an onnxruntime artifact `onnxruntime_onnx` (`model.onnx`;
Triton's onnxruntime backend loads the file's bytes, and onnxruntime recognises its ORT format from them), an
OpenVINO model the `openvino` backend (`model.xml`). Inputs and outputs are the engine's own (after NCHW or
dtype changes at the IO), from the report's engine summary. When every input and output has a dynamic leading
dimension it is Triton's batch dimension: `max_batch_size` is the largest batch every TensorRT profile allows
(onnxruntime runs any batch: DEFAULT_MAX_BATCH), the dims leave it out, and dynamic batching is on. Otherwise
`max_batch_size` is 0 and the dims are the full shapes (-1 where dynamic).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .artifacts import replace_dir
from .errors import ConfigError, OutputError
from .runtime import ORT_FORMAT, TENSORRT_PLAN

DEFAULT_MAX_BATCH = 8
PLATFORMS = {TENSORRT_PLAN: ("platform", "tensorrt_plan", "model.plan"),
             ORT_FORMAT: ("platform", "onnxruntime_onnx", "model.onnx"),
             "openvino": ("backend", "openvino", "model.xml")}
DTYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
          "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
          "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
          "bfloat16": "TYPE_BF16", "bf16": "TYPE_BF16", "object": "TYPE_STRING", "str": "TYPE_STRING"}


def _dynamic(d) -> bool:
    return d is None or (isinstance(d, int) and d < 0)


# Triton's OpenVINO backend loads OpenVINO IR or ONNX models; a compiled blob (ours, or OpenVINO's own) it cannot.
_NOT_SERVABLE = {"openvino-blob": "an OpenVINO engine (a compiled blob: Triton's OpenVINO backend loads IR or ONNX, "
                                  "not compiled blobs)"}
_SERVABLE_FIX = "add --backend onnxruntime (or tensorrt on a GPU machine) to build an engine Triton serves"


def check_backend(backend: str) -> None:
    """Refuse (ConfigError), before any work, a backend whose engines Triton cannot serve."""
    if backend == "openvino":
        raise ConfigError(f"--triton-repo cannot take {_NOT_SERVABLE['openvino-blob']}", _SERVABLE_FIX)


def _kind(fmt: str | None) -> tuple[str, str, str]:
    if fmt in _NOT_SERVABLE:
        raise OutputError(f"no Triton platform for {_NOT_SERVABLE[fmt]}", _SERVABLE_FIX)
    for key, value in PLATFORMS.items():
        if fmt and fmt.startswith(key):
            return value
    raise OutputError(f"no Triton platform for engine format '{fmt}'",
                      f"--triton-repo takes {', '.join(PLATFORMS)} engines")


def max_batch(io: list[dict]) -> int:
    """Triton's max_batch_size: 0 unless every tensor's leading dim is dynamic (then the batch the profiles allow)."""
    if not io or any(not t["shape"] or not _dynamic(t["shape"][0]) for t in io):
        return 0
    limits = [max(p[2][0] for p in t["profiles"]) for t in io if t["mode"] == "input" and t.get("profiles")]
    return min(limits) if limits else DEFAULT_MAX_BATCH


def _tensor(t: dict, batched: bool) -> str:
    dtype = DTYPES.get(t["dtype"])
    if dtype is None:
        raise OutputError(f"tensor '{t['name']}' has dtype {t['dtype']}, which Triton has no type for",
                          "convert it at the IO (e.g. --fp16-io off) or leave --triton-repo out")
    dims = [(-1 if _dynamic(d) else int(d)) for d in (t["shape"][1:] if batched else t["shape"])]
    return (f'  {{\n    name: "{_quote(t["name"])}"\n    data_type: {dtype}\n'
            f"    dims: [ {', '.join(map(str, dims))} ]\n  }}")


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def config_text(name: str, engine: dict) -> str:
    """config.pbtxt for the engine summarised by ``engine`` (the report's `engine`: format and io)."""
    field, platform, filename = _kind(engine.get("format"))
    io = engine.get("io") or []
    if not io:
        raise OutputError("the report lists no engine inputs and outputs", "rebuild the engine with this version")
    batch = max_batch(io)
    lines = [f'name: "{_quote(name)}"', f'{field}: "{platform}"', f"max_batch_size: {batch}",
             f'default_model_filename: "{filename}"']
    for mode in ("input", "output"):
        tensors = [_tensor(t, batch > 0) for t in io if t["mode"] == mode]
        lines.append(f"{mode} [\n" + ",\n".join(tensors) + "\n]")
    if batch > 0:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def write_model(repo: Path, name: str, engine_path: Path, report: dict | None) -> Path:
    """Write (or replace) ``repo/name``: its config.pbtxt and version 1 of the model. Returns the directory."""
    engine = (report or {}).get("engine") or {}
    text = config_text(name, engine)
    repo = Path(repo)
    try:
        repo.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=repo))
    except OSError as e:
        raise OutputError(f"cannot write the Triton repository '{repo}': {e.strerror or e}",
                          "choose a writable --triton-repo directory") from None
    try:
        (tmp / "1").mkdir()
        shutil.copyfile(engine_path, tmp / "1" / _kind(engine.get("format"))[2])
        (tmp / "config.pbtxt").write_text(text)
        replace_dir(tmp, repo / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return repo / name
