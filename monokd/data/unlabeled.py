"""Unlabeled frames: KITTI raw frames as training items without targets.

Configuration (``cfg["data"]["unlabeled"]``; absent or null = no unlabeled frames):

- ``root``: the KITTI raw root (``<date>/<date>_drive_<nnnn>_sync/...``, monokd.data.raw).
- ``split``: a raw split file ``<root>/ImageSets/<split>.txt`` (null: every frame under root).
- ``share``: the fraction of the frames of each training batch that are unlabeled, in [0, 1);
  batch b holds :func:`unlabeled_per_batch` of them, so the long-run fraction is exact even
  at batch size 1 (where batches alternate).
- ``allow_overlap``: let frames of a drive holding a val frame through (monokd.data.leakage).
- ``mapping``: the folder of the object devkit's mapping files (null: ``<data.root>/mapping``
  or ``<data.root>/devkit/mapping``).

An item of :class:`UnlabeledDataset` has every key of a labeled item (monokd.data.dataset:
image, P2, ..., lidar_to_rect, depth_map, points as the rest of ``cfg["data"]`` asks; not
depth_pred or proposals, which are refused), its
``targets`` empty, ``labeled`` False and ``frame_id`` ``<drive>/<frame>``; the image, the
augmentation and the LiDAR and depth inputs go through the labeled dataset's code, so a
mixed batch stacks. ``collate`` turns the flags into ``batch["labeled"]`` (B,) bool, on
which a loss skips its detection terms.

At construction the leakage guard runs (the student's val split is
``<data.root>/ImageSets/<data.val_split>.txt``) and the frames are checked: each date's
calib files parse, every image is present and whole with P2's principal point inside it,
sweeps and depth maps are present when the data options read them.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from monokd.data.checks import (check_data_options, check_depth_size, check_principal_point, image_size,
                                require_frames)
from monokd.data.dataset import KittiDataset, data_config
from monokd.data.kitti import (Calibration, KittiFormatError, KittiPaths, check_image_complete, check_velodyne_size,
                               read_split)
from monokd.data.leakage import check_leakage, find_mapping_dir
from monokd.data.raw import RawFrame, RawPaths, frame_from_id, list_raw_frames, read_raw_calib, read_raw_split
from monokd.errors import ConfigError
from monokd.schema import Section

DEFAULTS = {"root": None, "split": None, "share": 0.5, "allow_overlap": False, "mapping": None}
SECTION = Section("data.unlabeled", DEFAULTS, typed=True, paths=("root", "mapping"))


def unlabeled_options(section) -> dict:
    """``data.unlabeled`` over :data:`DEFAULTS`: unknown keys, wrong kinds, a missing root
    and a share outside [0, 1) are ConfigErrors naming the key."""
    options = SECTION.resolve(section)
    for key in ("root", "split", "mapping"):
        if options[key] is not None and not isinstance(options[key], str):
            raise ConfigError(f"data.unlabeled.{key}: expected a path or a name, got {options[key]!r}")
    if options["root"] is None:
        raise ConfigError("data.unlabeled.root: no KITTI raw root given")
    if not 0 <= options["share"] < 1:
        raise ConfigError(f"data.unlabeled.share: {options['share']!r} is not in [0, 1) (the fraction of each "
                          "batch's frames that are unlabeled)")
    return options


def unlabeled_per_batch(batch_index: int, batch_size: int, share: float) -> int:
    """Unlabeled frames in batch ``batch_index``: floor((b + 1) s B) - floor(b s B), so that
    any run of batches holds the fraction ``share`` of unlabeled frames to within one frame
    (s = 0.5, B = 1: 0, 1, 0, 1, ...; s = 0.25, B = 8: 2 in each)."""
    exact = Fraction(share).limit_denominator(10**6) * batch_size
    return math.floor((batch_index + 1) * exact) - math.floor(batch_index * exact)


class UnlabeledDataset(KittiDataset):
    """The frames of ``data.unlabeled`` (see the module docstring); one item per frame.

    Args:
        cfg: the full config (``cfg["data"]`` is read, ``data.unlabeled`` must be set).
        augment: force augmentation on or off (None: ``data.augment.enabled``, and on when
            that is None: unlabeled frames are for training only).
    """

    def __init__(self, cfg: dict, augment: bool | None = None):
        self.cfg = data_config(cfg)
        check_data_options(self.cfg)
        if self.cfg.get("unlabeled") is None:
            raise ConfigError("data.unlabeled: not set (root, split, share)")
        for key, why in (("depth_pred_dir", "its maps are named by object frame id"),
                         ("proposals", "its boxes come from labels or from result files named by object frame id")):
            if self.cfg.get(key):
                raise ConfigError(f"data.{key}: not available for unlabeled frames ({why})")
        self.options = self.cfg["unlabeled"]
        self.root = Path(self.options["root"])
        if not self.root.is_dir():
            raise KittiFormatError(self.root, None, "data.unlabeled.root", "the KITTI raw root does not exist "
                                                                           "(or is not a folder)")
        self.split = self.options["split"]
        self.paths = RawPaths(self.root)
        self.split_file = self.paths.split(self.split) if self.split else None
        self.frames = read_raw_split(self.split_file, self.root) if self.split_file else list_raw_frames(self.root)
        self.ids = [f.id for f in self.frames]
        require_frames(self.ids, self.split_file or self.root)
        self.notes = self._guard()
        check_raw_frames(self.paths, self.frames, self.cfg)
        self.has_labels = False
        self.class_counts: Counter = Counter()
        self.classes = list(self.cfg["classes"])
        enabled = augment if augment is not None else self.cfg["augment"]["enabled"]
        self.augment = True if enabled is None else bool(enabled)
        self.input_size = tuple(int(s) for s in self.cfg["input_size"])
        self._draws = 0
        self._calibs: dict[str, Calibration] = {}

    def _guard(self) -> list[str]:
        object_root = self.cfg.get("root")
        mapping_dir = find_mapping_dir(object_root, self.options["mapping"])
        val_split = self.cfg.get("val_split", "val")
        if mapping_dir is not None and object_root is None:
            raise ConfigError("data.root: not set, so the student's val split (data.val_split) cannot be read "
                              "for the leakage guard")
        val_ids = read_split(KittiPaths(Path(object_root)).split(val_split)) if mapping_dir is not None else []
        return check_leakage(self.frames, val_ids, mapping_dir, val_split=val_split,
                             allow_overlap=bool(self.options["allow_overlap"]), raw_root=self.root)

    def read_calib(self, frame: str) -> Calibration:
        date = frame_from_id(frame).date
        if date not in self._calibs:
            self._calibs[date] = read_raw_calib(self.paths.date_dir(date))
        return self._calibs[date].copy()

    def read_objects(self, frame: str) -> list:
        return []

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["labeled"] = False
        return item


def check_raw_frames(paths: RawPaths, frames: list[RawFrame], data_cfg: dict) -> None:
    """Each date's calibration parses; each frame's image is present and whole, P2's principal
    point inside it; its sweep is present (depth_maps: lidar) and whole when read, its depth
    map present (depth_maps: depth_2) and of the image's size when read. KittiFormatError
    names the file."""
    depth_mode = data_cfg.get("depth_maps")
    reads_lidar = depth_mode in ("lidar", "auto") or bool(data_cfg.get("load_points"))
    calibs: dict[str, Calibration] = {}
    for frame in frames:
        if frame.date not in calibs:
            calibs[frame.date] = read_raw_calib(paths.date_dir(frame.date))
        image = paths.file("image_2", frame)
        if not image.is_file():
            raise KittiFormatError(image, None, None, f"image of {frame.id} not found")
        size = image_size(image)
        check_image_complete(image)
        check_principal_point(calibs[frame.date].P2, paths.file("calib", frame), size)
        velo = paths.file("velodyne", frame)
        if depth_mode == "lidar" and not velo.is_file():
            raise KittiFormatError(velo, None, None, f"sweep of {frame.id} not found (data.depth_maps: lidar)")
        if reads_lidar and velo.is_file():
            check_velodyne_size(velo)
        depth = paths.file("depth_2", frame)
        if depth_mode == "depth_2" and not depth.is_file():
            raise KittiFormatError(depth, None, None, f"depth map of {frame.id} not found (data.depth_maps: "
                                                      "depth_2; monokd depth-maps --raw writes them)")
        if depth_mode in ("depth_2", "auto") and depth.is_file():
            check_depth_size(np.empty(image_size(depth)[::-1], dtype=np.uint8), depth, size)


class MixedDataset(Dataset):
    """Labeled frames (indices 0 .. L-1) followed by unlabeled ones (L .. L+U-1), for one
    loader whose batch sampler draws both (each batch's unlabeled count from
    :func:`unlabeled_per_batch`)."""

    def __init__(self, labeled: Dataset, unlabeled: Dataset):
        self.labeled = labeled
        self.unlabeled = unlabeled

    def __len__(self) -> int:
        return len(self.labeled) + len(self.unlabeled)

    @property
    def _draws(self) -> int:
        return getattr(self.labeled, "_draws", 0)

    @_draws.setter
    def _draws(self, value: int) -> None:
        # the training loader resets the per-process draw counter of what it wraps
        for part in (self.labeled, self.unlabeled):
            if hasattr(part, "_draws"):
                part._draws = value

    def __getitem__(self, index: int) -> dict:
        if index < len(self.labeled):
            return self.labeled[index]
        return self.unlabeled[index - len(self.labeled)]

