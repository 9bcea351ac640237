"""The one place onnxruntime sessions are made: CPU provider, quiet logging, and an optimization level that says
what the session is for. A leaf: onnxruntime is imported lazily (it is heavy); of the project it imports only
``compiler.limits`` (itself a leaf over ``errors``), for onnxruntime's quiet log level.

* ``AS_WRITTEN`` (no graph optimizations): validation seams, the runtime's runners and the export check run a
  model exactly as written. onnxruntime's own fusions (e.g. folding BatchNormalization into Conv) change float32
  rounding, by 3.7e-4 on a random-weight ResNet50V2, and would be blamed on the export or the passes.
* ``BUILD`` (extended, valid on any CPU): the onnxruntime backend's ``portable`` artifact, once, when it writes it.
* ``NATIVE`` (all: extended plus the CPU layout optimizations, NCHWc): the backend's ``native`` artifact, tied to
  this CPU's instruction set and this onnxruntime version (see compiler/backends/onnxruntime.py).
"""
from __future__ import annotations

from pathlib import Path

from .. import limits

AS_WRITTEN = "disable_all"
BUILD = "extended"
NATIVE = "all"
ORT_FORMAT_ENTRY = "session.load_model_format"
EXTERNAL_DATA_ENTRY = "session.model_external_initializers_file_folder_path"


def session(model, level: str = AS_WRITTEN, *, ort_format: bool = False, save_ort_to: Path | None = None,
            disabled_optimizers=(), save_onnx_to: Path | None = None, external_data: str | None = None,
            external_data_dir: Path | None = None):
    """An onnxruntime CPU ``InferenceSession`` over ``model`` (a path, or serialized bytes).

    ``ort_format``: the file is onnxruntime's ORT flatbuffer. ``save_ort_to``: write the optimized model there in
    ORT format (the onnxruntime backend's build). ``save_onnx_to``: write it there as ONNX instead, its
    initializers of 1 KiB or more in the file ``external_data`` (a name, in that file's directory): the form of a
    model over 2 GB, which an ORT flatbuffer cannot hold. ``external_data_dir``: where serialized ``model`` bytes
    keep their external data (a path finds it beside the file). onnxruntime's own exceptions propagate: each caller
    words them for its stage.
    """
    import onnxruntime as ort

    limits.quiet_onnxruntime()  # onnxruntime's default logger too: its errors reach the user in our one-line errors
    so = ort.SessionOptions()
    so.log_severity_level = limits.ORT_QUIET
    so.graph_optimization_level = {AS_WRITTEN: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   BUILD: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   NATIVE: ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    if ort_format:
        so.add_session_config_entry(ORT_FORMAT_ENTRY, "ORT")
    if save_ort_to is not None:
        so.optimized_model_filepath = str(save_ort_to)
        so.add_session_config_entry("session.save_model_format", "ORT")
    if save_onnx_to is not None:
        so.optimized_model_filepath = str(save_onnx_to)
        if external_data:
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name", external_data)
            so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    if external_data_dir is not None:
        so.add_session_config_entry(EXTERNAL_DATA_ENTRY, str(external_data_dir))
    source = model if isinstance(model, bytes) else str(model)
    extra = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
    return ort.InferenceSession(source, sess_options=so, providers=["CPUExecutionProvider"], **extra)
