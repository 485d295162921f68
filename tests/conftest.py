"""Shared fixtures: the real KITTI sample frames and a tiny SynthKITTI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI runs in a fresh clone with shared/ beside the repository, as in /work/{main,shared}.
KITTI_SAMPLES = REPO_ROOT.parent / "shared" / "data" / "kitti_samples"


@pytest.fixture(scope="session")
def kitti_samples() -> Path:
    """Root of the 22 real KITTI training frames (read in place, never copied)."""
    if not (KITTI_SAMPLES / "training" / "label_2").is_dir():
        pytest.skip(f"real KITTI samples not found at {KITTI_SAMPLES} (shared/ must sit beside the repo)")
    return KITTI_SAMPLES


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A tiny SynthKITTI (4 train + 4 val frames, 416x128) generated once per session."""
    try:
        from monokd.data.synth import generate
    except ImportError as err:
        pytest.skip(f"monokd.data.synth.generate is not available yet: {err}")
    root = tmp_path_factory.mktemp("synth")
    generate(root, num_train=4, num_val=4, seed=0, width=416, height=128)
    return root


@pytest.fixture()
def tiny_root(tmp_path) -> Path:
    """Three 220x64 frames: two cars and a pedestrian; only a DontCare; a car too near to supervise."""
    from tests.helpers import write_tiny_root

    return write_tiny_root(tmp_path)


@pytest.fixture
def root(synth_root, tmp_path) -> Path:
    """A private copy of the tiny SynthKITTI (4 train + 4 val frames) to break."""
    copy = tmp_path / "synth"
    shutil.copytree(synth_root, copy)
    return copy


@pytest.fixture
def no_model(monkeypatch):
    """Building the model fails loudly: a data error must come before it."""
    from monokd.training import fit as fit_module

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the data was checked")
    monkeypatch.setattr(fit_module, "DetectorModule", refuse)
