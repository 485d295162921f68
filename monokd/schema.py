"""Config sections declared once: each key's default, its choices, whether it names a file.

A :class:`Section` is the declaration of one config section (``train``, ``data``, a model's
``model`` and ``loss``, a distiller's ``distill``): a mapping of key -> default. The loader
(monokd.config) checks every section of a recipe against its declaration, so that an unknown
key or a value outside its choices is refused naming the file and line that set it; the code
that reads a section takes it over its defaults with :meth:`Section.resolve`, and a single
setting with :func:`monokd.config.setting`. Adding a key is one line: the key and its default
in the declaration (and, for a choice-valued key, its allowed values in ``choices``).

In a declaration:

- a nested mapping is a sub-section: merged over its defaults, its keys checked;
- a key of ``whole`` holds a mapping taken as given (not merged: e.g. a BEV backbone's lists
  go together) whose keys are still checked against the default's;
- a key of ``free`` holds anything (its reader checks it: per-class anchors, loss weights);
- a key of ``sections`` is another declared :class:`Section` (e.g. the anchor head inside a
  model), or ``"module:NAME"`` where that module imports this one's; a None default there
  means the sub-section is off unless given;
- ``choices`` maps a dotted key to its allowed values;
- ``paths`` lists the dotted keys that name files or folders: the loader reads a relative
  one against the folder of the file that sets it;
- ``typed``: a value must be of its default's kind (a number for a number, ...);
- ``none_is_default``: a key given as null takes its default;
- ``renamed``: old spellings refused with the key that replaced them.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from typing import Any

from monokd.errors import ConfigError, did_you_mean


class ConfigKeyError(ConfigError):
    """A ConfigError about one dotted key (``key``), so the loader can say which file set it."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


@dataclass(frozen=True)
class Section:
    """The declaration of one config section (see the module docstring)."""

    name: str
    defaults: dict
    choices: dict = field(default_factory=dict)
    paths: tuple = ()
    whole: tuple = ()
    free: tuple = ()
    sections: dict = field(default_factory=dict)
    typed: bool = False
    none_is_default: bool = False
    renamed: dict = field(default_factory=dict)  # an old spelling -> the dotted key that replaced it

    def keys(self) -> list[str]:
        return list(self.defaults)

    def section(self, key: str) -> Section:
        """The declared sub-section ``key`` (a ``"module:NAME"`` reference imported here)."""
        sub = self.sections[key]
        if isinstance(sub, str):
            module, _, name = sub.partition(":")
            sub = getattr(importlib.import_module(module), name)
        return sub

    def default(self, key: str) -> Any:
        """The declared default of a dotted ``key`` of this section (KeyError if undeclared)."""
        head, _, rest = key.partition(".")
        if head not in self.defaults:
            raise KeyError(f"{self.name}.{key} is not declared")
        if not rest:
            return copy.deepcopy(self.defaults[head])
        if head in self.sections:
            return self.section(head).default(rest)
        node = self.defaults[head]
        for part in rest.split("."):
            node = node[part]
        return copy.deepcopy(node)

    def path_keys(self) -> list[str]:
        """Every dotted key of this section (sub-sections included) that names a file."""
        out = list(self.paths)
        for key in self.sections:
            out += [f"{key}.{p}" for p in self.section(key).path_keys()]
        return out

    def check(self, given: Any, prefix: str | None = None) -> None:
        """Refuse unknown keys, mappings given as scalars, values outside their choices and,
        when ``typed``, values of another kind than their default (ConfigKeyError naming the
        dotted key). ``given`` is the section as written (None: empty)."""
        self.resolve(given, prefix)

    def resolve(self, given: Any, prefix: str | None = None) -> dict:
        """``given`` over the defaults, checked (see :meth:`check`); ``given`` is not modified."""
        prefix = prefix or self.name
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise ConfigKeyError(prefix, f"expected a mapping, got {given!r}")
        out = copy.deepcopy(self.defaults)
        for key, value in given.items():
            out[key] = self._value(key, value, prefix)
        for dotted, allowed in self.choices.items():
            value = _lookup(out, dotted)
            # YAML reads `32` as a number; a numeric name among the choices is the same value
            if value not in allowed and not (isinstance(value, int) and str(value) in allowed):
                raise ConfigKeyError(f"{prefix}.{dotted}", f"{value!r} is not one of {list(allowed)}")
        return out

    def _value(self, key: str, value: Any, prefix: str) -> Any:
        where = f"{prefix}.{key}"
        if key in self.renamed:
            raise ConfigKeyError(where, f"no longer read; write {prefix}.{self.renamed[key]}")
        if key not in self.defaults:
            raise ConfigKeyError(where, f"unknown key; {did_you_mean(key, self.defaults)}"
                                        f"known: {', '.join(self.defaults)}")
        default = self.defaults[key]
        if value is None:
            if key in self.sections and default is None:
                return None
            return copy.deepcopy(default) if (self.none_is_default or isinstance(default, dict)) else None
        if key in self.free:
            return copy.deepcopy(value)
        if key in self.sections:
            return self.section(key).resolve(value, where)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigKeyError(where, f"expected a mapping, got {value!r}")
            unknown = [k for k in value if k not in default]
            if unknown and default:
                raise ConfigKeyError(f"{where}.{unknown[0]}", f"unknown key; {did_you_mean(unknown[0], default)}"
                                                              f"known: {', '.join(default)}")
            if self.typed:
                check_types(value, default, where)
            return copy.deepcopy(value) if key in self.whole else {**copy.deepcopy(default), **copy.deepcopy(value)}
        if self.typed:
            check_types({key: value}, {key: default}, prefix)
        return copy.deepcopy(value)


def _lookup(node: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


_KINDS = ((bool, (bool,), "true or false"), (int, (int,), "an integer"), (float, (int, float), "a number"),
          (str, (str,), "text"), ((list, tuple), (list, tuple), "a list"))


def check_types(section: dict, defaults: dict, prefix: str) -> None:
    """Each value of ``section`` is of its default's kind (a number where the default is a
    number, a flag for a flag, text for text, a list for a list, recursively); None and keys
    without a default are not checked. ConfigKeyError names the key."""
    for key, value in (section or {}).items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if value is None or default is None:
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigKeyError(f"{prefix}.{key}", f"expected a mapping, got {value!r}")
            check_types(value, default, f"{prefix}.{key}")
            continue
        for kind, accepted, what in _KINDS:
            if isinstance(default, kind):
                if not isinstance(value, accepted) or (bool not in accepted and isinstance(value, bool)):
                    raise ConfigKeyError(f"{prefix}.{key}",
                                         f"expected {what} (like the default {default!r}), got {value!r}")
                break


# --------------------------------------------------------------------------- the engine's own

TRAIN = Section("train", {
    "epochs": 1, "max_steps": -1, "batch_size": 1, "num_workers": 0, "seed": 0,
    "lr": 2e-4, "weight_decay": 1e-4,
    "moms": None,  # [high, low]: Adam's beta1 cycled with the one-cycle rate; None: 0.9
    "adam_beta2": 0.999,
    "no_decay_bias": False,  # True: no weight decay on biases and norms (AdamW parameter groups)
    "fused_optimizer": False,  # True: AdamW's fused kernel (CPU, CUDA): a ~3x faster update, other rounding
    "lr_schedule": "multistep", "lr_milestones": [], "lr_gamma": 0.1,  # multistep: x lr_gamma at each
    "warmup_epochs": 0,
    "pct_start": 0.4, "div_factor": 10.0,  # onecycle
    "grad_clip": 0,  # max gradient norm; 0: none
    "max_nonfinite": 20,  # non-finite steps in a row before the run stops; 0: never
    "val_every": 1, "limit_val_batches": None, "log_every": 10, "ckpt_every_steps": 0,
    "monitor": "Car/3d/moderate/R40@0.70",  # the validation AP that picks best.ckpt
    "deterministic": False, "find_unused_parameters": False, "start_method": "popen",
    "precision": "32",  # 32, bf16-mixed, 16-mixed or auto (monokd.training.precision)
}, choices={"lr_schedule": ("multistep", "onecycle"), "precision": ("32", "bf16-mixed", "16-mixed", "auto")})

EVAL = Section("eval", {
    "batch_size": None,  # None: train.batch_size
    "classes": None,  # None: data.classes
    "min_height_scale": 1.0, "compute_aos": None, "min_overlaps": None,  # monokd.evaluation.evaluate's
}, free=("min_overlaps",))

# The top-level sections of a recipe; model, loss and distill are declared by the model named
# in model.name and the method named in distill.method (monokd.models, monokd.distill).
TOP_LEVEL = ("data", "model", "loss", "train", "eval", "distill")


def sections_of(cfg: dict) -> dict[str, Section | None]:
    """The declaration of each top-level section of ``cfg`` (None: not declared, e.g. an
    unregistered model's). Unknown top-level sections raise ConfigKeyError."""
    from monokd.data.dataset import SECTION as DATA
    from monokd.distill import distill_section
    from monokd.models import model_sections

    for key in cfg:
        if key not in TOP_LEVEL:
            raise ConfigKeyError(key, f"unknown section; {did_you_mean(key, TOP_LEVEL)}known: {', '.join(TOP_LEVEL)}")
    for key, name in (("model", "name"), ("distill", "method")):  # what picks the declarations
        section = cfg.get(key)
        if section is not None and not isinstance(section, dict):
            raise ConfigKeyError(key, f"expected a mapping, got {section!r}")
        if section is not None and section.get(name) is not None and not isinstance(section.get(name), str):
            raise ConfigKeyError(f"{key}.{name}", f"expected a name (text), got {section.get(name)!r}")
    model, loss = model_sections(cfg.get("model") or {})
    return {"data": DATA, "model": model, "loss": loss, "train": TRAIN, "eval": EVAL,
            "distill": distill_section(cfg.get("distill")) if cfg.get("distill") else None}


def check_config(cfg: dict) -> None:
    """Check every section of a whole config against its declaration (ConfigKeyError)."""
    for name, section in sections_of(cfg).items():
        if section is not None and name in cfg:
            section.check(cfg[name], name)
