"""Every kind of file monokd reads, cut short at a random offset (a partial download, a full
disk, a killed writer): the reader either reads it (what is there is well-formed) or raises a
monokd error (one line once the ``monokd`` command prints it), never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from monokd.cli import error_text
from monokd.errors import MonokdError

REPO = Path(__file__).resolve().parents[1]
P2 = "7.215377e+02 0.0 6.095593e+02 4.485728e+01 0.0 7.215377e+02 1.728540e+02 2.163791e-01 0.0 0.0 1.0 2.745884e-03"
CALIB = "\n".join([f"P0: {P2}", f"P1: {P2}", f"P2: {P2}", f"P3: {P2}",
                   "R0_rect: 1 0 0 0 1 0 0 0 1", "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0",
                   "Tr_imu_to_velo: 1 0 0 0 0 1 0 0 0 0 1 0"]) + "\n"
LABEL = ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
         "Pedestrian 0.00 0 0.21 423.17 173.67 433.17 224.03 1.60 0.38 0.30 -5.87 1.63 23.11 -0.03\n"
         "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n")
RESULT = "".join(line[:-1] + " 0.9312\n" for line in LABEL.splitlines(keepends=True)[:2])


def _image(suffix: str) -> bytes:
    import cv2

    picture = (np.arange(24 * 32 * 3) % 251).astype(np.uint8).reshape(24, 32, 3)
    return cv2.imencode(suffix, picture)[1].tobytes()


def _depth() -> bytes:
    import cv2

    return cv2.imencode(".png", (np.arange(24 * 32) % 3000 + 1).astype(np.uint16).reshape(24, 32))[1].tobytes()


def _torch_file(obj) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        torch.save(obj, Path(folder) / "f.pt")
        return (Path(folder) / "f.pt").read_bytes()


def _safetensors() -> bytes:
    from safetensors.torch import save

    return save({"conv1.weight": torch.ones(2, 3), "bn1.bias": torch.zeros(2)})


def _config_text() -> str:
    """A recipe resolved into one file (no ``_base_``), with a comment of multi-byte characters."""
    import yaml

    from monokd.config import load_config

    return "# lengths in metres (×1), angles in radians (π)\n" + yaml.safe_dump(
        load_config(REPO / "configs" / "monodetr_synth.yaml"), sort_keys=False)


def _read_config(path: Path):
    from monokd.config import load_config

    return load_config(path)


def _read_checkpoint(path: Path):
    from monokd.training.checkpoint import checkpoint_config, read_checkpoint

    return checkpoint_config(read_checkpoint(path), path)


def _read_proposals(path: Path):
    from monokd.data.proposals import from_results

    return from_results(path, ["Car", "Pedestrian"], np.eye(3)[:2], 0.0, 0.0)


def _reader(module: str, name: str):
    def read(path: Path):
        import importlib

        return getattr(importlib.import_module(module), name)(path)
    return read


# kind -> (file name, the whole file's bytes (built once), the reader)
KINDS = {
    "label": ("000001.txt", lambda: LABEL.encode(), _reader("monokd.data.kitti", "read_label")),
    "calib": ("000001.txt", lambda: CALIB.encode(), _reader("monokd.data.kitti", "read_calib")),
    "velodyne": ("000001.bin", lambda: np.linspace(-5, 5, 64, dtype=np.float32).clip(0, 1).tobytes(),
                 _reader("monokd.data.kitti", "read_velodyne")),
    "depth": ("000001.png", _depth, _reader("monokd.data.kitti", "read_depth")),
    "image_png": ("000001.png", lambda: _image(".png"), _reader("monokd.data.kitti", "read_image")),
    "image_jpg": ("000001.jpg", lambda: _image(".jpg"), _reader("monokd.data.kitti", "read_image")),
    "result": ("000001.txt", lambda: RESULT.encode(), _reader("monokd.evaluation.results", "read_results")),
    "split": ("val.txt", lambda: b"000001\n000002\n000010\n", _reader("monokd.data.kitti", "read_split")),
    "checkpoint": ("last.ckpt", lambda: _torch_file({"state_dict": {"model.w": torch.ones(3)},
                                                     "hyper_parameters": {"cfg": {"model": {"name": "x"}}}}),
                   _read_checkpoint),
    "safetensors": ("w.safetensors", _safetensors, _reader("monokd.weights", "read_weights")),
    "config": ("recipe.yaml", lambda: _config_text().encode(), _read_config),
    "proposals": ("000001.txt", lambda: RESULT.encode(), _read_proposals),
}
_WHOLE: dict[str, bytes] = {}


def whole(kind: str) -> bytes:
    if kind not in _WHOLE:
        _WHOLE[kind] = KINDS[kind][1]()
    return _WHOLE[kind]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_whole_file_reads(kind, tmp_path):
    name, _, read = KINDS[kind]
    (tmp_path / name).write_bytes(whole(kind))
    read(tmp_path / name)


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_a_file_cut_short_reads_or_is_one_monokd_error(kind, cut, tmp_path):
    name, _, read = KINDS[kind]
    data = whole(kind)
    path = tmp_path / name
    path.write_bytes(data[: int(cut * len(data))])
    try:
        read(path)
    except MonokdError as err:
        text = error_text(err)
        assert text and "Traceback" not in text


def test_a_config_cut_inside_a_character_is_one_monokd_error(tmp_path):
    data = whole("config")
    path = tmp_path / "recipe.yaml"
    path.write_bytes(data[: data.index("×".encode()) + 1])
    with pytest.raises(MonokdError, match="not UTF-8 text"):
        _read_config(path)
