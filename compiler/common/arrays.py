"""Arrays as users hand them over: the one dtype rule (``cast``) shared by ``run``/``bench``
(``runtime.feeds.prepare_feed``), the sample loader (``compiler.common.samples``) and the goldens, and the one reader of
``.npy``/``.npz`` files. A leaf: it sits below the sample loader and the runtime, which both use it.

The rule: a dtype is kept, a float goes to another float (a narrowing that overflows is refused), an integer to
another integer whose range holds its values, a bool stays a bool; nothing else is cast.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CompilerError, RunError


def dtype_text(dtype: np.dtype) -> str:
    """A dtype's name as a user knows it (numpy's unicode/bytes/object kinds as string/bytes/object)."""
    return {"U": "string", "S": "bytes", "O": "object"}.get(dtype.kind, dtype.name)


def cast(arr: np.ndarray, target: np.dtype, *, subject: str, takes: str, whose: str,
         error: type[CompilerError] = RunError) -> tuple[np.ndarray, bool]:
    """``arr`` in ``target`` by the module's one rule, and whether the dtype changed; else ``error``.

    The words name the place: ``subject`` holds the array ("input 'x'"), ``takes`` says what needs ``target``
    ("the artifact takes", "input 'x' is"), ``whose`` owns the integer range ("the artifact's", "its dtype").
    """
    src = arr.dtype
    if src == target:
        return arr, False
    if src.kind == "f" and target.kind == "f":
        with np.errstate(over="ignore"):  # counted below
            out = arr.astype(target)
        overflow = int(np.count_nonzero(np.isfinite(arr) & ~np.isfinite(out))) if target.itemsize < src.itemsize \
            else 0
        if overflow:
            raise error(f"{subject} has {overflow} value(s) beyond {target.name}'s range "
                        f"(±{float(np.finfo(target).max):g}); {takes} {target.name}",
                        f"scale the data into {target.name}'s range")
        return out, True
    if src.kind in "iu" and target.kind in "iu":
        info = np.iinfo(target)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise error(f"{subject} has {src.name} values from {int(arr.min())} to {int(arr.max())}, which do not "
                        f"fit {whose} {target.name} ({info.min}..{info.max})",
                        f"give values that fit {target.name}")
        return arr.astype(target), True
    if src.kind == "b" and target.kind == "b":
        return arr.astype(target), True
    raise error(f"{subject} has dtype {dtype_text(src)} but {takes} {target.name}",
                f"convert it with .astype(np.{target.name}) if that is meant, or give the data the model expects")


def load_arrays(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """An .npy file's array, or an .npz file's arrays by name; numpy's own error where it cannot read it
    (callers word it for their stage). Pickled objects are never loaded."""
    data = np.load(path, allow_pickle=False)
    if isinstance(data, np.ndarray):
        return data
    with data:
        return {k: data[k] for k in data.files}
