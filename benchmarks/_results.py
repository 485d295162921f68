"""What every benchmark ends with: its figures written as JSON (under benchmarks/results/)."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(doc, path: str | Path) -> Path:
    """Write ``doc`` as indented JSON at ``path`` (parent folders created) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")
    return path
