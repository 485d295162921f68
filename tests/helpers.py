"""What several test files share: fakes, tiny configs, fake data roots and picture readers.

Test files import from here (or take a fixture of tests/conftest.py), never from one another.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


# --------------------------------------------------------------------------- benchmarks


@contextlib.contextmanager
def benchmark_module(name: str):
    """``benchmarks/<name>.py`` as a fresh module, with benchmarks/ on sys.path while it is in
    use (the scripts import their shared ``_results``), removed afterwards."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


# --------------------------------------------------------------------------- pictures


def read_png(path: str | Path) -> np.ndarray:
    """The decoded picture (H, W, 3) uint8 RGB; a file that is not a whole PNG raises."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", f"{path}: {image.format}, not a PNG"
        return np.asarray(image.convert("RGB"))


def colour_mask(image: np.ndarray, colour, tolerance: int = 12) -> np.ndarray:
    """(H, W) bool: the pixels within ``tolerance`` (per channel) of ``colour``, an RGB triple
    of 0..255 or a matplotlib colour ("#1f77b4", "tab:red")."""
    if isinstance(colour, str):
        from matplotlib.colors import to_rgb

        colour = [round(255 * c) for c in to_rgb(colour)]
    return (np.abs(image.astype(int) - np.asarray(colour, dtype=int)) <= tolerance).all(axis=-1)


def tallest_run(mask: np.ndarray) -> int:
    """The longest vertical run of ``mask`` pixels in any column (the height of the tallest
    solid bar; anti-aliased text or lines of a similar colour make no long runs)."""
    best = 0
    for column in mask.T:
        edges = np.diff(np.concatenate([[0], column.astype(np.int8), [0]]))
        starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        best = max(best, int((ends - starts).max()) if starts.size else 0)
    return best
