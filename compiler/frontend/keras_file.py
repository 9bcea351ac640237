"""Keras model files (``.keras``, legacy ``.h5``) → SavedModel, so the rest of the pipeline is shared.

Keras loads the file in safe mode (the default: no deserialization of Python
lambdas) and exports it with ``model.export()``, the same path as the
``cnn_nhwc`` fixture: signatures ``serve`` and ``serving_default``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InspectError
from . import import_tensorflow, native_stderr_silenced


def keras_to_saved_model(path: Path, out_dir: Path) -> Path:
    import_tensorflow()
    import keras

    try:
        with native_stderr_silenced():
            model = keras.models.load_model(str(path), compile=False)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError... for unloadable files
        text = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise InspectError(f"Keras {keras.__version__} cannot load '{path}' ({type(e).__name__}: {text})",
                           "load it where it was saved and call model.export('dir'), then compile 'dir'") from e
    try:
        with native_stderr_silenced():
            model.export(str(out_dir), verbose=False)
    except Exception as e:
        raise InspectError(f"Keras could not export '{path}' as a SavedModel ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:300] if str(e) else ''})",
                           "models with unbuilt inputs need model.build() or a call on data before saving") from e
    return Path(out_dir)
