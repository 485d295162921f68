"""The one configuration loader.

A recipe is a YAML file under ``configs/``. It may name ``_base_: other.yaml`` (a path relative
to itself, or a list of them) whose keys it overrides, and a command line may override any
leaf with ``--set a.b.c=value`` (the value parsed as YAML, so ``--set train.epochs=3`` is an
int and ``--set model.depth_input=null`` is None).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from monokd.errors import ConfigError


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
    """Read a recipe (following ``_base_``) and apply ``key.path=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = _parse(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as err:  # e.g. a file cut inside a multi-byte character
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    bases = raw.pop("_base_", [])
    cfg: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        cfg = merge(cfg, load_config(path.parent / base))
    cfg = merge(cfg, raw)
    for item in overrides or []:
        set_key(cfg, item, source=str(path))
    return cfg


def set_key(cfg: dict, item: str, source: str = "--set") -> None:
    """Apply one ``a.b.c=value`` override in place."""
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
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def get(cfg: dict, key: str, default: Any = None) -> Any:
    """``get(cfg, "a.b.c")`` with a default for any missing step."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def save_config(cfg: dict, path: str | Path) -> None:
    from monokd.atomic import write_text

    write_text(path, yaml.safe_dump(cfg, sort_keys=False))


def check_types(section: dict, defaults: dict, prefix: str) -> None:
    """Each value of ``section`` is of its default's kind (a number where the default is a
    number, a flag for a flag, text for text, a list for a list, recursively); None and keys
    without a default are left to the section's own validation. ConfigError names the key."""
    kinds = ((bool, (bool,), "true or false"), (int, (int,), "an integer"), (float, (int, float), "a number"),
             (str, (str,), "text"), ((list, tuple), (list, tuple), "a list"))
    for key, value in (section or {}).items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if value is None or default is None:
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}.{key}: expected a mapping, got {value!r}")
            check_types(value, default, f"{prefix}.{key}")
            continue
        for kind, accepted, what in kinds:
            if isinstance(default, kind):
                if not isinstance(value, accepted) or (bool not in accepted and isinstance(value, bool)):
                    raise ConfigError(f"{prefix}.{key}: expected {what} (like the default {default!r}), got {value!r}")
                break


def section_options(section: dict, defaults: dict, choices: dict, prefix: str) -> dict:
    """A two-level options section (``cfg["distill"]``, say) merged over ``defaults``.

    Unknown keys, a mapping given as a scalar, and a value outside ``choices[(part, key)]``
    raise ConfigError naming ``prefix.part.key``. Neither input is modified.
    """
    if not isinstance(section, dict):
        raise ConfigError(f"{prefix}: expected a mapping, got {type(section).__name__}")
    options = copy.deepcopy(defaults)
    for key, value in section.items():
        if key not in options:
            raise ConfigError(f"{prefix}.{key}: unknown option (known: {', '.join(options)})")
        if isinstance(options[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}.{key}: expected a mapping")
            for sub, sub_value in value.items():
                if sub not in options[key]:
                    raise ConfigError(f"{prefix}.{key}.{sub}: unknown option (known: {', '.join(options[key])})")
                options[key][sub] = sub_value
        else:
            options[key] = value
    for (part, key), allowed in choices.items():
        if options[part][key] not in allowed:
            raise ConfigError(f"{prefix}.{part}.{key}: {options[part][key]!r} is not one of {allowed}")
    return options
