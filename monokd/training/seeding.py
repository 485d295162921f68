"""Random state for reproducible, resumable training.

A run is a function of its seed: the weights start from ``seed``, the data order and every
augmentation draw depend only on (seed, epoch, frame index), and the global generators
(dropout) are saved in ``last.ckpt`` and restored on resume. The states are stored as plain
lists so that a checkpoint loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def sample_seed(*keys: int) -> int:
    """A 32-bit seed that depends on ``keys`` only (e.g. seed, epoch, index)."""
    return int(np.random.SeedSequence([int(k) % 2**63 for k in keys]).generate_state(1)[0])


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block with all global generators seeded by ``seed``, then put back the states
    they had before, so that the block neither depends on nor disturbs the caller's draws."""
    saved = capture_rng()
    seed_everything(seed)
    try:
        yield
    finally:
        restore_rng(saved)


def capture_rng() -> dict:
    """The global generator states as plain Python values (checkpoint-safe)."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = {
        "python": [version, list(state), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def restore_rng(saved: dict) -> None:
    version, state, gauss = saved["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(saved["torch"], dtype=torch.uint8))
    if "cuda" in saved and torch.cuda.is_available():
        states = [torch.tensor(s, dtype=torch.uint8) for s in saved["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
