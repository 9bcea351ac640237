"""The project file: a team's models and their compile settings, `tf2trt.toml` or `[tool.tf2trt]` in pyproject.toml.

    [defaults]                      # every model starts from these
    backend = "auto"
    timeout_s = 900

    [models.resnet50]
    path = "models/resnet50"        # relative to this file
    input_shapes = "image:1x224x224x3"
    precision = "int8"
    calib_data = "data/calib"
    golden = "goldens/resnet50"     # a directory written by `record`: checked after the compile

A setting is any `compile` flag under its name with underscores (`--inputs-as-nchw` → `inputs_as_nchw`). The
accepted keys and their types are read from the compile subparser's actions, so a new flag is accepted here
without a second list. Batch adds `path`, `golden`, `timeout_s` and `memory_mib`. Every mistake is one line
naming the file (and line), the table and the key.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib

PROJECT_FILE = "tf2trt.toml"
DEFAULT_TIMEOUT_S = 1800.0
DEFAULT_MEMORY_MIB = 16384
# Compile flags batch sets itself, per model, inside build/<name>/.
MANAGED = {"model", "out", "report", "html", "quiet", "triton_repo", "help"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_FIX = "see the project file section of the README"
# Settings naming files the build writes (caches, dumps): not inputs, so not hashed.
OUTPUT_SETTINGS = {"calib_cache", "timing_cache", "dump_passes", "keep_intermediates"}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the project: where it is, its merged settings and the compile arguments they make."""

    name: str
    path: Path  # absolute
    settings: dict  # the merged compile settings, as written (defaults, then the model's table)
    argv: tuple[str, ...]  # compile flags for those settings (no MODEL/OUT; relative paths are from root)
    root: Path  # the project file's directory: children run there, so relative paths mean the same
    golden: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mib: int | None = DEFAULT_MEMORY_MIB
    inputs: tuple[Path, ...] = field(default=())  # files and directories the build reads (hashed)

    @property
    def backend(self) -> str:
        return self.settings.get("backend", "auto")


@dataclass(frozen=True)
class Project:
    file: Path
    models: tuple[ModelSpec, ...]

    def select(self, only: str | None) -> tuple[ModelSpec, ...]:
        if not only:
            return self.models
        names = [n.strip() for n in only.split(",") if n.strip()]
        known = {m.name for m in self.models}
        for n in names:
            if n not in known:
                raise ConfigError(f"--only names '{n}', which {self.file} does not define{_nearest(n, known)}",
                                  "give model names from the [models.NAME] tables")
        return tuple(m for m in self.models if m.name in names)


def find_project_file(given: Path | None) -> Path:
    """FILE as given (a directory: its tf2trt.toml, else its pyproject.toml), default the current directory's."""
    base = Path(given) if given is not None else Path(".")
    if base.is_dir():
        for candidate in (base / PROJECT_FILE, base / "pyproject.toml"):
            if candidate.is_file() and (candidate.name == PROJECT_FILE or
                                        "tf2trt" in _read(candidate).get("tool", {})):
                return candidate
        raise ConfigError(f"no {PROJECT_FILE} (or pyproject.toml with [tool.tf2trt]) in '{base}'",
                          f"write {PROJECT_FILE} with [models.NAME] tables, or pass its path")
    if not base.is_file():
        raise ConfigError(f"project file '{base}' does not exist", f"pass the path of your {PROJECT_FILE}")
    return base


def load_project(file: Path, compile_parser: argparse.ArgumentParser) -> Project:
    """Read and check the project file; every model's settings become compile flags."""
    file = Path(file)
    data = _read(file)
    where = _Where(file, file.read_text(errors="replace"), "")
    if file.name == "pyproject.toml":
        data = data.get("tool", {}).get("tf2trt")
        where = _Where(file, where.text, "tool.tf2trt.")
        if data is None:
            raise ConfigError(f"{file}: no [tool.tf2trt] table", "add [tool.tf2trt.models.NAME] tables")
    for key in data:
        if key not in ("defaults", "models"):
            where.fail(None, key, f"unknown table{_nearest(key, ('defaults', 'models'))}")
    actions = setting_actions(compile_parser)
    defaults = _table(data, "defaults", where, None)
    models = _table(data, "models", where, None)
    if not models:
        raise ConfigError(f"{file}: no models", "add a [models.NAME] table with path = \"...\" for each model")
    for key in defaults:
        _check(where, "defaults", key, defaults[key], actions)
    specs = []
    for name, table in models.items():
        if not _NAME.match(name):
            where.fail(name, None, "a model name must be letters, digits, '_', '-' or '.' (it names a directory)")
        if not isinstance(table, dict):
            where.fail(name, None, f"models.{name} must be a table ([models.{name}]), not a value")
        for key in table:
            _check(where, name, key, table[key], actions)
        specs.append(_spec(name, {**defaults, **table}, where, actions))
    return Project(file=file.resolve(), models=tuple(specs))


def compile_subparser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `compile` subcommand's parser inside the CLI's top parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["compile"]
    raise ConfigError("the CLI parser has no compile subcommand", "report this as a bug")


def setting_actions(compile_parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Setting name (the flag with underscores) → its argparse action, for every compile flag batch passes on."""
    return {a.dest: a for a in compile_parser._actions if a.option_strings and a.dest not in MANAGED}


# ---------------------------------------------------------------------------------------------------- checks

BATCH_KEYS = {"path": "a path (string)", "golden": "a path (string)", "timeout_s": "a positive number of seconds",
              "memory_mib": "a positive integer (MiB), or 0 for no limit"}


class _Where:
    """Names the place of a mistake: the file, the line of the key when it can be found, the table and the key."""

    def __init__(self, file: Path, text: str, prefix: str):
        self.file, self.text, self.prefix = file, text, prefix

    def line(self, model: str | None, key: str | None) -> int | None:
        table = f"{self.prefix}{'defaults' if model == 'defaults' else f'models.{model}'}" if model else None
        current = ""
        for number, raw in enumerate(self.text.splitlines(), 1):
            header = re.match(r"^\s*\[([^\[\]]+)\]", raw)
            if header:
                current = header.group(1).replace('"', "").replace(" ", "")
                if key is None and current == table:
                    return number
            elif key is not None and current == (table or self.prefix.rstrip(".")) and \
                    re.match(rf'^\s*"?{re.escape(key)}"?\s*=', raw):
                return number
        return None

    def fail(self, model: str | None, key: str | None, cause: str, fix: str = _FIX):
        line = self.line(model, key)
        place = f"{self.file}:{line}" if line else str(self.file)
        table = "" if model is None else ("[defaults] " if model == "defaults" else f"[models.{model}] ")
        raise ConfigError(f"{place}: {table}{f'{key}: ' if key else ''}{cause}", fix)


def _read(file: Path) -> dict:
    try:
        with open(file, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML ({e})", "fix the syntax at the line named") from None
    except OSError as e:
        raise ConfigError(f"cannot read project file '{file}': {e.strerror or e}", "check the path") from None


def _table(data: dict, key: str, where: _Where, model) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        where.fail(model, key, f"must be a table ([{key}]), not {type(value).__name__}")
    return value


def _nearest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _check(where: _Where, model: str, key: str, value, actions: dict) -> None:
    """One key of one table: known, of the right type, one of the choices."""
    if key == "path" and model == "defaults":
        where.fail(model, key, "each model has its own path", "move path into the [models.NAME] tables")
    if key in BATCH_KEYS:
        ok = _batch_value_ok(key, value)
        expected = BATCH_KEYS[key]
    elif key in actions:
        ok, expected = _value_ok(actions[key], value)
    else:
        known = set(actions) | set(BATCH_KEYS)
        hint = " (batch sets it for each model)" if key in MANAGED else _nearest(key, known)
        where.fail(model, key, f"unknown setting{hint}",
                   "settings are compile flags with '_' for '-' (e.g. input_shapes), plus "
                   + ", ".join(sorted(BATCH_KEYS)))
    if not ok:
        where.fail(model, key, f"expected {expected}, got {type(value).__name__} {value!r}")
    choices = getattr(actions.get(key), "choices", None)
    if choices and value not in choices:
        where.fail(model, key, f"'{value}' is not one of {', '.join(map(str, choices))}{_nearest(str(value), choices)}")


def _batch_value_ok(key: str, value) -> bool:
    if key in ("path", "golden"):
        return isinstance(value, str) and bool(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value >= 0 if key == "memory_mib" else value > 0


def _value_ok(action: argparse.Action, value) -> tuple[bool, str]:
    """Whether a TOML value fits a flag: switches take booleans, typed flags their type, the rest strings."""
    if action.nargs == 0:
        return isinstance(value, bool), "true or false"
    kind = action.type
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    if isinstance(value, list):  # repeatable flags repeat; comma-list flags join
        return bool(value) and all(isinstance(v, str) for v in value), "a string or a list of strings"
    return isinstance(value, str), "a string"


def to_argv(settings: dict, actions: dict) -> list[str]:
    """Compile flags for checked settings, in the order written."""
    argv = []
    for key, value in settings.items():
        if key in BATCH_KEYS:
            continue
        flag = actions[key].option_strings[-1]
        if actions[key].nargs == 0:
            argv += [flag] if value else []
        elif isinstance(actions[key], argparse._AppendAction):
            for item in value if isinstance(value, list) else [value]:
                argv += [flag, str(item)]
        else:
            argv += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    return argv


def _spec(name: str, settings: dict, where: _Where, actions: dict) -> ModelSpec:
    root = where.file.resolve().parent
    if "path" not in settings:
        where.fail(name, None, "has no path", f'add path = "models/{name}" (relative to {where.file.name})')
    path = (root / settings["path"]).resolve()
    if not path.exists():
        where.fail(name, "path", f"'{settings['path']}' does not exist (looked for {path})",
                   "give the model's path relative to the project file")
    golden = (root / settings["golden"]).resolve() if "golden" in settings else None
    memory = int(settings.get("memory_mib", DEFAULT_MEMORY_MIB)) or None
    return ModelSpec(name=name, path=path, settings={k: v for k, v in settings.items() if k not in ("path",)},
                     argv=tuple(to_argv(settings, actions)), root=root, golden=golden,
                     timeout_s=float(settings.get("timeout_s", DEFAULT_TIMEOUT_S)), memory_mib=memory,
                     inputs=tuple(_inputs(path, golden, settings, root)))


def _inputs(path: Path, golden: Path | None, settings: dict, root: Path) -> list[Path]:
    """What the build reads besides its settings: the model, the golden, and each setting naming a file
    (a data directory, `FILE.py:FUNCTION`, a rules file)."""
    found = [path] + ([golden] if golden is not None else [])
    for key, value in settings.items():
        if key in ("path", "golden") or key in OUTPUT_SETTINGS:
            continue
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                continue
            for part in dict.fromkeys((item, item.rpartition(":")[0] or item)):  # ordered: the hash depends on it
                candidate = (root / part).resolve()
                if part and candidate.exists() and candidate not in found:
                    found.append(candidate)
    return found
