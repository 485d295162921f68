"""The one configuration loader.

A recipe is a YAML file under ``configs/``. It may name ``_base_: other.yaml`` (a path relative
to itself, or a list of them) whose keys it overrides, and a command line may override any
leaf with ``--set a.b.c=value`` (the value parsed as YAML, so ``--set train.epochs=3`` is an
int and ``--set model.depth_input=null`` is None).

Every section is checked against its declaration (monokd.schema): an unknown key, a misspelt
section or a value outside its choices is a ConfigError naming the file and line that set it
(``--set`` for an override). A path a file names (``data.root``, ``distill.teacher.ckpt``,
every key a declaration lists in ``paths``) is read relative to that file's folder, like
``_base_``; an override's relative path is the working directory's. A relative path that
exists only from the working directory (the spelling older recipes used) is still taken, with
a warning saying how to write it. docs/config.md has the rules.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from pathlib import Path
from typing import Any

import yaml

from monokd.errors import ConfigError, MonokdWarning

_MISSING = object()


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``2e-4`` as a float (YAML 1.1 wants ``2.0e-4``), since learning
    rates are written that way in every recipe."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _parse(text: str):
    return yaml.load(text, Loader=_Loader)


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; ``override`` wins. Neither input is modified."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a recipe (following ``_base_``), apply ``key.path=value`` overrides, read its paths
    relative to the files that name them, and check it (ConfigError naming file, line, key)."""
    cfg: dict[str, Any] = {}
    origin: dict[tuple, str] = {}  # dotted key -> "file:line" (or "--set ...") that set it last
    for source, raw, lines in _layers(Path(path)):
        cfg = merge(cfg, raw)
        for key in _dotted(raw):
            origin[key] = f"{source}:{lines[key]}" if key in lines else str(source)
            origin[key + ("@file",)] = str(source)
    for item in overrides or []:
        key = set_key(cfg, item, source=str(path))
        for stale in [k for k in origin if k[:len(key)] == key]:
            del origin[stale]
        origin[key] = f"--set {item}"
    _check(cfg, origin, str(path))
    _resolve_paths(cfg, origin)
    return cfg


def _layers(path: Path, seen: tuple = ()) -> list[tuple[Path, dict, dict]]:
    """(file, its mapping without ``_base_``, dotted key -> line) of ``path`` and its bases,
    bases first."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: _base_ includes itself")
    text = path.read_text()
    try:
        raw = _parse(text) or {}
        lines = _line_numbers(yaml.compose(text, Loader=_Loader))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    bases = raw.pop("_base_", [])
    layers = []
    for base in [bases] if isinstance(bases, str) else bases:
        layers += _layers(path.parent / base, seen + (path.resolve(),))
    return layers + [(path, raw, lines)]


def _line_numbers(node, prefix: tuple = ()) -> dict[tuple, int]:
    out: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (key_node.value,)
            out[key] = key_node.start_mark.line + 1
            out.update(_line_numbers(value_node, key))
    return out


def _dotted(node: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in node.items():
        out.append(prefix + (key,))
        if isinstance(value, dict):
            out += _dotted(value, prefix + (key,))
    return out


def _where(origin: dict, key: tuple, fallback: str) -> str:
    """The file and line (or override) that set ``key`` or its nearest enclosing section."""
    for end in range(len(key), 0, -1):
        if key[:end] in origin:
            return origin[key[:end]]
    below = [where for k, where in origin.items() if k[:len(key)] == key and k[-1] != "@file"]
    return below[0] if below else fallback


def _check(cfg: dict, origin: dict, fallback: str) -> None:
    from monokd.schema import ConfigKeyError, check_config

    try:
        check_config(cfg)
    except ConfigKeyError as err:
        raise ConfigError(f"{_where(origin, tuple(err.key.split('.')), fallback)}: {err}") from None


def apply_overrides(cfg: dict, overrides: list[str], source: str) -> dict:
    """A copy of an already loaded config (e.g. one stored in a checkpoint, named ``source``)
    with ``key=value`` overrides applied and checked like a file's. A stored config that does
    not check itself (written before a key was declared) is left unchecked."""
    from monokd.schema import ConfigKeyError, check_config

    cfg = copy.deepcopy(cfg)
    try:
        check_config(cfg)
        checked = True
    except ConfigKeyError:
        checked = False
    origin = {}
    for item in overrides:
        origin[set_key(cfg, item, source=f"--set (on the config of {source})")] = f"--set {item}"
    if checked:
        _check(cfg, origin, source)
    return cfg


def _resolve_paths(cfg: dict, origin: dict) -> None:
    """Each declared path a file sets, read relative to that file (see the module docstring)."""
    for key in _path_keys(cfg):
        value = get(cfg, ".".join(key))
        source = origin.get(key + ("@file",))
        if not isinstance(value, str) or not value or os.path.isabs(value) or source is None \
                or key not in origin or origin[key].startswith("--set"):
            continue
        beside = os.path.normpath(os.path.join(os.path.dirname(source), value))
        if not os.path.exists(beside) and os.path.exists(value):
            warnings.warn(f"{origin[key]}: {'.'.join(key)}: {value!r} is read from the working directory; "
                          f"write it relative to {source} "
                          f"({os.path.relpath(os.path.abspath(value), os.path.abspath(os.path.dirname(source)))!r})",
                          MonokdWarning, stacklevel=3)
            continue
        _put(cfg, key, beside)


def _put(cfg: dict, key: tuple, value: Any) -> None:
    node = cfg
    for part in key[:-1]:
        node = node[part]
    node[key[-1]] = value


def set_key(cfg: dict, item: str, source: str = "--set") -> tuple:
    """Apply one ``a.b.c=value`` override in place; returns the key as a tuple."""
    if "=" not in item:
        raise ConfigError(f"{source}: override {item!r} is not of the form key.path=value")
    key, _, text = item.partition("=")
    try:
        value = _parse(text)
    except yaml.YAMLError:
        value = text
    node = cfg
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value
    return tuple(parts)


def get(cfg: dict, key: str, default: Any = None) -> Any:
    """``get(cfg, "a.b.c")`` with a default for any missing step."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def setting(cfg: dict, key: str) -> Any:
    """The value of a declared engine setting (``train.lr``, ``eval.batch_size``,
    ``data.val_split``): as given in ``cfg``, else its one declared default (monokd.schema)."""
    value = get(cfg, key, _MISSING)
    if value is not _MISSING:
        return value
    from monokd.schema import EVAL, TRAIN

    section, _, rest = key.partition(".")
    if section == "data":
        from monokd.data.dataset import SECTION as DATA

        return DATA.default(rest)
    return {"train": TRAIN, "eval": EVAL}[section].default(rest)


def save_config(cfg: dict, path: str | Path) -> None:
    """Write ``cfg`` as YAML, its relative paths rewritten relative to ``path``'s folder (the
    loader reads them back as they are in ``cfg``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = copy.deepcopy(cfg)
    for key in _path_keys(out):
        value = get(out, ".".join(key))
        if isinstance(value, str) and value and not os.path.isabs(value):
            _put(out, key, os.path.relpath(value, path.parent))
    path.write_text(yaml.safe_dump(out, sort_keys=False))


def _path_keys(cfg: dict) -> list[tuple]:
    """The declared path keys of ``cfg``'s sections (none when a section is not declared)."""
    from monokd.schema import ConfigKeyError, sections_of

    try:
        sections = sections_of(cfg)
    except ConfigKeyError:
        return []
    return [(name, *dotted.split(".")) for name, section in sections.items() if section is not None
            for dotted in section.path_keys()]
