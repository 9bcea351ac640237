"""Stage 1: TensorFlow SavedModel in, ONNX out. The only package that imports TensorFlow.

- ``savedmodel``: reads ``saved_model.pb`` without executing it (signatures, IO, ops).
- ``export``: the tf2onnx call, plus the checks that it really produced standard ONNX.
- ``tfrun``: a Polygraphy runner over the SavedModel, the reference for validation.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ and Python chatter unless the user asked for it.

    Must run before the first ``import tensorflow``; users who set
    TF_CPP_MIN_LOG_LEVEL themselves keep their choice.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable CPU kernels for validation


def import_tensorflow():
    quiet_tensorflow()
    import logging

    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    tf.autograph.set_verbosity(0)
    try:  # absl's handler prints "Instructions for updating" deprecation notes
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    return tf


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True):
    """Send file descriptor 2 to a temporary file while TensorFlow's C++ code runs.

    Grappler and absl log through C++ straight to fd 2, ignoring
    TF_CPP_MIN_LOG_LEVEL for some messages. What they wrote is discarded on
    success; on an exception its last lines are kept on the exception as
    ``native_log`` for --debug.
    """
    if not enabled or os.environ.get("TF2TRT_SHOW_TF_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException as e:
            os.dup2(saved, 2)
            sink.seek(0)
            e.native_log = sink.read()[-4000:].decode(errors="replace")
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
