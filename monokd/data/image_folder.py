"""Images of a folder, with their cameras, as a detector's input (``monokd predict``'s data).

    <images>/<stem>.png|.jpg  +  <calib>/<stem>.txt (or one calib file for all)
        -> (3, H, W) image prepared as the evaluation-time dataset prepares it (no augmentation:
           the whole image resized to ``data.input_size`` as ``data.resize`` says), its P2
           (3, 4) and LiDAR -> rectified camera (4, 4), and empty targets

A calib file is KITTI's; a file holding only the ``P2:`` line is accepted too (its LiDAR frame
is then the camera's axes re-ordered). Every calib is checked against its image before any is
read as a batch; errors name the file (monokd.errors.KittiFormatError, FileNotFoundError).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from monokd.data.checks import check_principal_point, image_size
from monokd.data.dataset import data_config, empty_targets, image_item
from monokd.data.kitti import (IMAGE_SUFFIXES, KittiFormatError, check_camera_matrix, parse_number, read_calib,
                               read_image, read_lines)
from monokd.geometry.calib import AXES_VELO_TO_CAM, velo_to_rect_matrix


def read_P2(path: Path) -> np.ndarray:
    """(3, 4) P2 of a KITTI calib file, or of a file with just the ``P2:`` line."""
    try:
        return read_calib(path).P2
    except KittiFormatError as err:
        if err.reason != "missing calib key" or err.field == "P2":
            raise
    for number, line in enumerate(read_lines(path), start=1):
        if line.strip().startswith("P2:"):
            tokens = line.split(":", 1)[1].split()
            if len(tokens) != 12:
                raise KittiFormatError(path, number, "P2", f"expected 12 numbers, found {len(tokens)}")
            P2 = np.array([parse_number(t, path, number, "P2") for t in tokens], dtype=np.float64).reshape(3, 4)
            check_camera_matrix(P2, path, "P2")
            return P2
    raise KittiFormatError(path, None, "P2", "missing calib key")


def read_lidar_to_rect(path: Path) -> np.ndarray:
    """(4, 4) LiDAR -> rectified camera of a KITTI calib file (what a BEV model lifts with); for
    a file with just the ``P2:`` line, the camera's axes re-ordered (AXES_VELO_TO_CAM)."""
    try:
        return velo_to_rect_matrix(read_calib(path))
    except KittiFormatError as err:
        if err.reason != "missing calib key":
            raise
    return np.vstack([AXES_VELO_TO_CAM, [0.0, 0.0, 0.0, 1.0]])


class ImageFolder(Dataset):
    """Images of a directory with their P2, prepared as the evaluation-time dataset does
    (no augmentation: the whole image resized to ``data.input_size`` as ``data.resize`` says)."""

    def __init__(self, images: str | Path, calib: str | Path, cfg: dict):
        self.cfg = data_config(cfg)
        images, calib = Path(images), Path(calib)
        if not images.is_dir():
            raise FileNotFoundError(f"--images {images}: not a directory")
        self.paths = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise FileNotFoundError(f"--images {images}: no .png/.jpg images")
        stems = [p.stem for p in self.paths]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:  # one result file a stem: the second image would overwrite the first's
            raise KittiFormatError(images, None, None, f"images share a name: {', '.join(twice[:5])} "
                                                       "(e.g. 000001.png and 000001.jpg)")
        if calib.is_dir():
            self.calib_files = [calib / f"{p.stem}.txt" for p in self.paths]
            for image, file in zip(self.paths, self.calib_files):
                if not file.is_file():
                    raise KittiFormatError(file, None, None, f"no calib file for image {image.name}")
        elif calib.is_file():
            self.calib_files = [calib] * len(self.paths)
        else:
            raise FileNotFoundError(f"--calib {calib}: no such file or directory")
        self._P2 = {f: read_P2(f) for f in set(self.calib_files)}
        for image, file in zip(self.paths, self.calib_files):  # each calib against its image
            check_principal_point(self._P2[file], file, image_size(image))
        self._lidar_to_rect = {f: read_lidar_to_rect(f) for f in set(self.calib_files)}
        self.input_size = tuple(int(s) for s in self.cfg["input_size"])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        calib = self.calib_files[index]
        item, _ = image_item(read_image(self.paths[index]), self._P2[calib], self.paths[index].stem, self.cfg,
                             self.input_size)
        item["lidar_to_rect"] = torch.as_tensor(self._lidar_to_rect[calib], dtype=torch.float32)
        item["targets"] = empty_targets()
        return item
