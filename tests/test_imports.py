"""The import rules of docs/architecture.md, checked on every import of every library module.

Each ``import`` / ``from ... import`` statement of monokd/**/*.py is read with ``ast``, at
module level and inside functions alike (a function-local import is still a dependency), and
resolved to the package it names (relative imports included). Data flows one way:

    geometry    <- nothing of monokd but geometry (and monokd.errors, a leaf of error types)
    data        never imports models, distill, training, pipeline, commands
    models      never import distill, training, pipeline, commands
    evaluation  never imports models, training, pipeline, commands
    training    never imports pipeline, commands
    commands    imported by monokd/cli.py alone
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "monokd"

FORBIDDEN = {
    "data": {"models", "distill", "training", "pipeline", "commands"},
    "models": {"distill", "training", "pipeline", "commands"},
    "evaluation": {"models", "training", "pipeline", "commands"},
    "training": {"pipeline", "commands"},
}
# monokd.errors imports nothing of monokd (checked below), so every layer may raise its types.
LEAVES = {"errors"}
# Imports the rules above refuse but the library still needs (none: models and distillers
# meet in monokd/models/contract.py).
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path, root: Path = LIBRARY) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = LIBRARY) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``path``, however nested.

    ``from a import b`` yields ``a.b`` as well as ``a``, since ``b`` may be a submodule."""
    name = module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def area(module: str) -> str | None:
    """The first-level package of a monokd module (``monokd.data.kitti`` -> ``data``)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "monokd" and len(parts) > 1 else None


def violation(importer: str, target: str) -> str | None:
    """Why ``importer`` may not import ``target``, or None when the rules allow it."""
    source, dest = area(importer), area(target)
    if dest is None or any(importer == known and (target == allowed or target.startswith(allowed + "."))
                           for known, allowed in KNOWN_EXCEPTIONS):
        return None
    if dest == "commands" and source != "commands" and importer != "monokd.cli":
        return "only monokd/cli.py imports commands"
    if source == "geometry" and dest not in {"geometry"} | LEAVES:
        return "geometry imports nothing of monokd but geometry"
    if dest in FORBIDDEN.get(source, ()):
        return f"{source} must not import {dest}"
    return None


def violations(root: Path = LIBRARY) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        for line, target in imports_of(path, root):
            why = violation(importer, target)
            if why:
                found.append(f"{path.relative_to(root.parent)}:{line}: {importer} imports {target} ({why})")
    return found


def test_no_library_module_breaks_the_import_rules():
    assert violations() == []


def test_the_leaves_import_nothing_of_monokd():
    for leaf in LEAVES:
        assert [t for _, t in imports_of(LIBRARY / f"{leaf}.py") if area(t) or t == "monokd"] == []


def test_known_exceptions_are_still_needed():
    """An exception whose import is gone must leave the list (else it would hide a new one)."""
    present = {(module_name(p), t) for p in LIBRARY.rglob("*.py") for _, t in imports_of(p)}
    assert KNOWN_EXCEPTIONS <= present


@pytest.mark.parametrize("code, importer, expected", [
    ("from monokd.distill import interface", "monokd/models/x/model.py", "models must not import distill"),
    ("def f():\n    from monokd.training.fit import fit", "monokd/models/x/model.py", "models must not import training"),
    ("from ...data import kitti", "monokd/geometry/sub/x.py", "geometry imports nothing"),
    ("from ..data.kitti import Object3D", "monokd/geometry/x.py", "geometry imports nothing"),
    ("import monokd.commands.show", "monokd/viz/x.py", "only monokd/cli.py imports commands"),
    ("from monokd import commands", "monokd/pipeline/x.py", "only monokd/cli.py imports commands"),
    ("class A:\n    def f(self):\n        from monokd.models import build_detector", "monokd/evaluation/x.py",
     "evaluation must not import models"),
    ("from monokd.training import checkpoint", "monokd/data/x.py", "data must not import training"),
    ("from monokd.pipeline import demo", "monokd/training/x.py", "training must not import pipeline"),
    ("from monokd.errors import ConfigError", "monokd/geometry/x.py", None),
    ("from monokd.commands import show", "monokd/cli.py", None),
    ("from . import kitti", "monokd/data/x.py", None),
    ("from monokd.data.kitti import Object3D", "monokd/models/x/model.py", None),
])
def test_the_walker_sees_every_kind_of_import(tmp_path, code, importer, expected):
    path = tmp_path / "monokd" / importer.removeprefix("monokd/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code + "\n")
    found = violations(tmp_path / "monokd")
    if expected is None:
        assert found == []
    else:
        assert len(found) >= 1 and all(expected in line for line in found), found


TESTS = LIBRARY.parent / "tests"
# The contract's fakes move into tests/helpers.py with the detector contract that rewrites them.
TEST_IMPORT_EXCEPTIONS = {
    ("test_distill_add", "tests.test_distill_fake"), ("test_export", "tests.test_distill_fake"),
    ("test_distill_takd", "tests.takd_fakes"),
}


def test_no_test_file_imports_another():
    """Shared fakes and helpers live in tests/helpers.py (or conftest.py fixtures)."""
    found = []
    for path in sorted(TESTS.glob("*.py")):
        for line, target in imports_of(path, TESTS):
            module = target.rsplit(".", 1)[0] if target.count(".") > 1 else target
            if (module.startswith("tests.") and module not in ("tests.helpers", "tests.conftest")
                    and (path.stem, module) not in TEST_IMPORT_EXCEPTIONS):
                found.append(f"tests/{path.name}:{line}: imports {module}")
    assert found == []


@pytest.mark.parametrize("command", ["synth", "show", "evaluate"])
def test_light_commands_do_not_import_torch(command):
    """monokd/cli.py imports the chosen command's module alone; these need no torch (nor
    Lightning), which is why some imports stay inside the functions that need them."""
    code = ("import sys, monokd.cli, importlib; importlib.import_module(monokd.cli.COMMANDS[sys.argv[1]][0]); "
            "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, check=True,
                         cwd=LIBRARY.parent, env={**os.environ, "PYTHONPATH": str(LIBRARY.parent)})
    assert out.stdout.strip() == "[]"
