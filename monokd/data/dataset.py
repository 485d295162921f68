"""The PyTorch dataset over a KITTI root, and ``collate`` (the batch of docs/architecture.md).

Configuration (``cfg["data"]``; every key optional, defaults in :data:`DEFAULTS`):

- ``root``: the KITTI root (``ImageSets/``, ``training/``, ``testing/``).
- ``classes``: supervised classes, in label order (default Car, Pedestrian, Cyclist).
- ``input_size``: [W, H] of the network input (MonoDETR: 1280 x 384).
- ``mean``, ``std``: RGB normalisation on [0, 1] (ImageNet).
- ``min_height_scale``: multiplies the devkit's minimum 2-D heights (40/25/25 px) when the
  difficulty is assigned. ``auto`` = 1 for KITTI-sized images (360 to 390 rows, the drives'
  sizes) and image height / 375 otherwise, so that on a small render (e.g. a 128-row
  SynthKITTI) an object counts as the level it would have at KITTI's size.
- ``resize``: ``stretch`` (x and y scaled separately to ``input_size``), ``keep_aspect``
  (MonoDETR's: one scale, input W / image W, rows cropped) or ``pad`` (CaDDN's: native
  scale, the image at the top-left, the rest padding; see monokd.data.augment). P2 and
  ``input_to_original`` follow each exactly.
- ``filter``: MonoDETR's target filter, applied in input pixels after augmentation: drop
  objects with depth outside [min_depth, max_depth] (2, 65 m), truncation above
  max_truncation (0.5), occlusion above max_occlusion (2), a projected 3-D centre outside the
  input image (center_in_image) or outside its own 2-D box (center_in_box), and with
  ``drop_unknown`` (MonoDETR's "UnKnown") objects that meet no devkit difficulty (e.g. under
  25 px tall at KITTI's scale).
- ``clip_boxes_2d``: clip the GT 2-D boxes to the input image (MonoDETR does not: a box cut
  by the crop keeps its true extent, and center_in_box is tested on it).
- ``heading_target``: the alpha the heading is trained on: ``label`` (KITTI's alpha, the
  observation angle of the object's 3-D ray) or ``box_center`` (MonoDETR's: rotation_y minus
  atan2(u - cu, fu) at the 2-D box centre's column u of the original image).
- ``augment``: train-time augmentation (see monokd.data.augment): ``enabled`` (None = on
  for splits whose name starts with "train"), ``photometric``, ``channel_swap`` (0; MonoDETR
  0.5), ``flip_prob`` (0.5), ``scale_prob`` (0.5), ``scale_range`` ([0.95, 1.05]), ``shift``
  (0.1), ``sampling`` (uniform; MonoDETR gaussian with ``scale_sigma``, ``shift_sigma`` 0.05).
  The LiDAR scene's (monokd.data.lidar_augment, OpenPCDet's order, before the flip; each None
  for off; LiDAR-only recipes, the image does not follow): ``gt_sampling`` ({class: group
  size}, from ``<root>/gt_database/<split>/`` of ``monokd gt-database``, records of at least
  ``gt_min_points`` points), ``world_flip`` (the probability of mirroring the scene's y, which
  ``flip_prob`` never does), ``world_rotation`` ([low, high] radians about the LiDAR's z),
  ``world_scaling`` ([low, high]).
- ``depth_maps``: None (none), ``depth_2``, ``lidar`` or ``auto`` (depth_2 if the frame has
  one, else the LiDAR sweep projected, else all 0 = no depth).
- ``depth_pred_dir``: a folder of estimated depth maps in the depth_2 format (uint16 PNG,
  metres x 256, ``<frame>.png`` at the original image size), e.g. ``monokd depth predict``'s
  or a user's DORN maps: warped like depth_2 into ``depth_pred`` (1, H, W); a frame without
  its file is an error naming the file.
- ``proposals``: None, or the 2-D boxes of a two-stage detector (monokd.data.proposals:
  ``train`` / ``eval`` source, ``jitter``, ``copies``, ``results_dir``, ``min_height``,
  ``min_score``), drawn here so that every model fed the batch sees the same boxes.
- ``load_points``: add the LiDAR sweep as ``points``: (M, 4) x, y, z in the *rectified camera
  frame of the augmented frame* (mirrored with a flip, like the targets) and reflectance.
- ``fov_points_only``: keep only the points of the sweep that project into the original image
  (in front of the camera; OpenPCDet's FOV_POINTS_ONLY, on in KITTI's LiDAR recipes).
- ``part``: ``training`` or ``testing`` (None = ``testing`` for the split ``test``).
- ``default_P2``: a 3x4 matrix used for frames without a calib file (images only); their
  LiDAR frame is the camera's axes re-ordered (monokd.geometry.calib.AXES_VELO_TO_CAM).
- ``unlabeled``: KITTI raw frames without labels (monokd.data.unlabeled: ``root``, ``split``,
  ``share``, ``allow_overlap``, ``mapping``); validated here, read by UnlabeledDataset.

Every item carries ``lidar_to_rect`` (4, 4): LiDAR -> rectified camera frame of the augmented
frame (R0_rect @ Tr_velo_to_cam, then x -> -x when flipped), so that
P2 @ lidar_to_rect @ [x, y, z, 1] projects a LiDAR point onto the network input. The LiDAR
frame itself is never mirrored: a flip changes the image and the camera frame, not the scene
a BEV grid sees.

Without a label_2 directory (``testing/``, or images only) targets are empty. With
``split=None`` every image (.png, .jpg, .jpeg) of the part is used. The frames are checked
at construction (monokd.data.checks: files present and consistent, no empty split).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from monokd.config import get
from monokd.data import augment as aug
from monokd.data import proposals as P
from monokd.data.checks import check_data_options, check_depth_size, check_frames, check_sweep_projects
from monokd.data.gt_database import database_dir, load_database
from monokd.data.lidar_augment import augment_scene, check_scene_options, scene_augmented
from monokd.data.proposals import SECTION as PROPOSALS
from monokd.data.kitti import (IMAGE_SUFFIXES, Calibration, KittiFormatError, KittiPaths, Object3D, difficulty,
                               read_calib, read_depth, read_image, read_label, read_split,
                               read_velodyne)
from monokd.geometry.boxes import alpha_from_rotation_y, box_center
from monokd.geometry.calib import AXES_VELO_TO_CAM, in_camera_view, lidar_to_rect, project, velo_to_rect_matrix
from monokd.geometry.depth import lidar_depth_map
from monokd.schema import Section

DEFAULTS = {
    "root": None,
    "train_split": "train",
    "val_split": "val",
    "classes": ["Car", "Pedestrian", "Cyclist"],
    "input_size": [1280, 384],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "min_height_scale": "auto",
    "resize": "stretch",
    "filter": {"min_depth": 2.0, "max_depth": 65.0, "max_truncation": 0.5, "max_occlusion": 2,
               "center_in_image": True, "center_in_box": True, "drop_unknown": False},
    "clip_boxes_2d": True,
    "heading_target": "label",
    "augment": {"enabled": None, "photometric": True, "channel_swap": 0.0, "flip_prob": 0.5, "scale_prob": 0.5,
                "scale_range": [0.95, 1.05], "shift": 0.1, "sampling": "uniform", "scale_sigma": 0.05,
                "shift_sigma": 0.05, "gt_sampling": None, "gt_min_points": 5, "world_flip": None,
                "world_rotation": None, "world_scaling": None},
    "depth_maps": None,
    "depth_pred_dir": None,
    "proposals": None,
    "load_points": False,
    "fov_points_only": False,
    "part": None,
    "default_P2": None,
    "seed": 0,
    "unlabeled": None,
}

TARGET_KEYS = ("labels", "boxes_2d", "centers_3d_proj", "depth", "dims", "location", "rotation_y",
               "alpha", "truncation", "occlusion", "difficulty")


HEADING_TARGETS = ("label", "box_center")
SECTION = Section("data", DEFAULTS, sections={"proposals": PROPOSALS, "unlabeled": "monokd.data.unlabeled:SECTION"},
                  paths=("root", "depth_pred_dir"),
                  choices={"resize": aug.RESIZES, "heading_target": HEADING_TARGETS,
                           "augment.sampling": aug.SAMPLINGS})


def data_config(cfg: dict | None) -> dict:
    """``cfg["data"]`` over :data:`DEFAULTS`; unknown keys and values outside their choices
    raise ConfigError naming the key."""
    out = SECTION.resolve((cfg or {}).get("data"))
    if out["unlabeled"] is not None:
        from monokd.data.unlabeled import unlabeled_options

        out["unlabeled"] = unlabeled_options(out["unlabeled"])
    return out


class KittiDataset(Dataset):
    """Frames of ``<root>/ImageSets/<split>.txt``; one item per frame (see :func:`collate`).

    Args:
        root: KITTI root (None: ``cfg["data"]["root"]``).
        split: split name, or None for every image of the part.
        cfg: the full config (only ``cfg["data"]`` is read).
        augment: force train-time augmentation on or off (None: ``data.augment.enabled``).
    """

    # the LiDAR scene augmentation (set at construction; off for a subclass that reads no labels)
    scene_augment = False
    gt_records = None

    def __init__(self, root=None, split: str | None = "train", cfg: dict | None = None,
                 augment: bool | None = None):
        self.cfg = data_config(cfg)
        check_data_options(self.cfg)
        root = root if root is not None else self.cfg["root"]
        if root is None:
            raise KittiFormatError("<config>", None, "data.root", "no KITTI root given")
        self.root = Path(root)
        self.split = split
        # the split "test" (or a path to its file, ImageSets/test.txt) reads testing/
        part = self.cfg["part"] or ("testing" if split and Path(str(split)).stem == "test" else "training")
        self.paths = KittiPaths(self.root, part)
        image_dir = self.root / part / "image_2"
        if split is None:
            if not image_dir.is_dir():
                raise KittiFormatError(image_dir, None, None, "image directory not found")
            self.ids = sorted({p.stem for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES})
        else:
            self.ids = read_split(self.paths.split(split), image_dir)
        self.has_labels = (self.root / part / "label_2").is_dir()
        # objects of each type (from the checks' reading of every label file)
        self.class_counts = check_frames(self.paths, self.ids, self.paths.split(split) if split else None, self.cfg,
                                         self.has_labels)
        self.classes = list(self.cfg["classes"])
        enabled = augment if augment is not None else self.cfg["augment"]["enabled"]
        self.augment = bool(enabled) if enabled is not None else str(split).startswith("train")
        self.input_size = tuple(int(s) for s in self.cfg["input_size"])
        self._draws = 0
        check_scene_options(self.cfg)
        self.scene_augment = self.augment and scene_augmented(self.cfg["augment"])
        if self.scene_augment and self.cfg["augment"]["gt_sampling"] is not None:
            folder = database_dir(self.root, Path(str(split)).stem)  # the database of the split trained on
            self.gt_records = load_database(folder, int(self.cfg["augment"]["gt_min_points"]))

    def __len__(self) -> int:
        return len(self.ids)

    # --- reading -------------------------------------------------------------------------

    def read_calib(self, frame: str) -> Calibration:
        path = self.paths.file("calib", frame)
        if not path.is_file() and self.cfg["default_P2"] is not None:
            P2 = np.asarray(self.cfg["default_P2"], dtype=np.float64).reshape(3, 4)
            return Calibration(P0=P2, P1=P2, P2=P2, P3=P2, Tr_velo_to_cam=AXES_VELO_TO_CAM.copy())
        return read_calib(path)

    def read_objects(self, frame: str) -> list[Object3D]:
        return read_label(self.paths.file("label_2", frame)) if self.has_labels else []

    def read_depth_map(self, frame: str, calib: Calibration, image_size):
        """(H, W) depth in metres at the original resolution, or None."""
        mode = self.cfg["depth_maps"]
        depth_path = self.paths.file("depth_2", frame)
        if mode in ("depth_2", "auto") and (depth_path.is_file() or mode == "depth_2"):
            return check_depth_size(read_depth(depth_path, nan_policy="zero"), depth_path, image_size)
        velo_path = self.paths.file("velodyne", frame)
        if mode in ("lidar", "auto") and (velo_path.is_file() or mode == "lidar"):
            return None  # projected from the sweep after augmentation (stays sparse and exact)
        return np.zeros(image_size[::-1], dtype=np.float32)

    def _rng(self, index: int) -> np.random.Generator:
        # torch.initial_seed() differs per DataLoader worker and per epoch; the counter makes
        # repeated draws in one process differ too.
        self._draws += 1
        return np.random.default_rng([int(self.cfg["seed"]), torch.initial_seed() % 2**63, index, self._draws])

    # --- one item ------------------------------------------------------------------------

    def __getitem__(self, index: int) -> dict:
        frame = self.ids[index]
        image = read_image(self.paths.file("image_2", frame))
        calib = self.read_calib(frame)
        objects = self.read_objects(frame)
        image_size = (image.shape[1], image.shape[0])
        rng = self._rng(index)
        choice = aug.sample_augmentation(rng, self.cfg["augment"]) if self.augment else aug.Augmentation()
        if self.augment and self.cfg["augment"]["photometric"]:
            image = aug.photometric_distortion(image, rng, channel_swap=float(self.cfg["augment"]["channel_swap"]))
        points = self._sweep(frame, calib, image_size) if self.cfg["load_points"] else None
        if self.scene_augment:
            points, objects = augment_scene(points, objects, calib, image_size, rng, self.cfg["augment"],
                                            self.gt_records)
        item, affine = image_item(image, calib.P2, frame, self.cfg, self.input_size, choice)
        P2 = aug.camera_matrix(calib.P2, affine, choice.flip)  # float64: the targets project with it
        if self.cfg["heading_target"] == "box_center":
            objects = box_center_alpha(objects, calib.P2)
        if choice.flip:
            objects = aug.mirror_objects(objects)
        item["targets"] = self.targets(objects, affine, P2, image_size)
        camera = _input_camera(calib, P2, choice.flip)
        item["lidar_to_rect"] = torch.as_tensor(velo_to_rect_matrix(camera), dtype=torch.float32)
        if self.cfg["depth_maps"]:
            item["depth_map"] = self._depth_map(frame, calib, camera, image_size, affine)
        if self.cfg["proposals"]:
            item["proposals"] = self._proposals(frame, item["targets"], affine, image_size, rng)
        if self.cfg["depth_pred_dir"]:
            estimated_path = Path(self.cfg["depth_pred_dir"]) / f"{frame}.png"
            estimated = check_depth_size(read_depth(estimated_path, nan_policy="zero"), estimated_path, image_size)
            item["depth_pred"] = self._warp_depth(estimated, affine)
        if points is not None:
            rect = lidar_to_rect(points[:, :3], camera)
            item["points"] = torch.as_tensor(np.concatenate([rect, points[:, 3:4]], 1), dtype=torch.float32)
        return item

    def _sweep(self, frame: str, calib: Calibration, image_size) -> np.ndarray:
        """(M, 4) LiDAR-frame sweep (empty without one), cropped to the camera's view with
        ``fov_points_only`` (before any scene augmentation, as OpenPCDet does)."""
        velo = self.paths.file("velodyne", frame)
        points = read_velodyne(velo) if velo.is_file() else np.zeros((0, 4), np.float32)
        if self.cfg["fov_points_only"]:
            points = points[in_camera_view(lidar_to_rect(points[:, :3], calib), calib.P2, image_size)]
        return points

    def _proposals(self, frame: str, targets: dict, affine, image_size, rng) -> dict:
        cfg = P.proposal_config(self.cfg["proposals"])
        source = cfg["train"] if self.split == self.cfg.get("train_split", "train") else cfg["eval"]
        if source == "results":
            boxes = P.from_results(Path(cfg["results_dir"]) / f"{frame}.txt", self.classes, affine,
                                   float(cfg["min_height"]) * self.min_height_scale(image_size), float(cfg["min_score"]))
        else:
            boxes = P.from_targets(targets, rng if source == "gt_jitter" else None, float(cfg["jitter"]),
                                   int(cfg["copies"]))
        return P.clip_boxes(boxes, self.input_size)

    def _depth_map(self, frame, calib, camera, image_size, affine) -> torch.Tensor:
        depth = self.read_depth_map(frame, calib, image_size)
        if depth is None:
            velo = self.paths.file("velodyne", frame)
            points = read_velodyne(velo)
            out = check_sweep_projects(lidar_depth_map(points, camera, self.input_size), len(points), velo,
                                       self.paths.file("calib", frame))
            return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[None]
        return self._warp_depth(depth, affine)

    def _warp_depth(self, depth: np.ndarray, affine) -> torch.Tensor:
        """(H, W) metres at the original size -> (1, H_in, W_in) at the input (nearest: no
        blending of an object's depth with the background's)."""
        out = aug.warp(depth, affine, self.input_size, nearest=True)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[None]

    def min_height_scale(self, image_size) -> float:
        scale = self.cfg["min_height_scale"]
        if scale != "auto":
            return float(scale)
        height = image_size[1]
        return 1.0 if 360 <= height <= 390 else height / 375.0

    def targets(self, objects: list[Object3D], affine: np.ndarray, P2: np.ndarray, image_size) -> dict:
        """The supervised objects of the configured classes, in input pixels (see the module doc)."""
        objects = [o for o in objects if o.type in self.classes]
        if not objects:
            return empty_targets()
        dims = np.stack([o.dims for o in objects])
        location = np.stack([o.location for o in objects])
        truncation = np.array([o.truncated for o in objects])
        occlusion = np.array([o.occluded for o in objects])
        level = difficulty([o.height_2d for o in objects], occlusion, truncation, self.min_height_scale(image_size))
        width, height = self.input_size
        boxes = aug.transform_boxes_2d(np.stack([o.box2d for o in objects]), affine)
        if self.cfg["clip_boxes_2d"]:
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
        centers, _ = project(box_center(dims, location), P2)
        keep = self._keep(location[:, 2], truncation, occlusion, centers, boxes)
        if self.cfg["filter"]["drop_unknown"]:
            keep &= level >= 0
        values = {
            "labels": [self.classes.index(o.type) for o in objects],
            "boxes_2d": boxes, "centers_3d_proj": centers, "depth": location[:, 2], "dims": dims,
            "location": location, "rotation_y": [o.rotation_y for o in objects],
            "alpha": [o.alpha for o in objects], "truncation": truncation,
            "occlusion": occlusion, "difficulty": level,
        }
        return {k: _tensor(k, np.asarray(v)[keep]) for k, v in values.items()}

    def _keep(self, depth, truncation, occlusion, centers, boxes) -> np.ndarray:
        rule = self.cfg["filter"]
        keep = (depth >= rule["min_depth"]) & (depth <= rule["max_depth"])
        keep &= (truncation <= rule["max_truncation"]) & (occlusion <= rule["max_occlusion"])
        u, v = centers[:, 0], centers[:, 1]
        if rule["center_in_image"]:
            width, height = self.input_size
            keep &= (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)
        if rule["center_in_box"]:
            keep &= (u >= boxes[:, 0]) & (u <= boxes[:, 2]) & (v >= boxes[:, 1]) & (v <= boxes[:, 3])
        return keep


def box_center_alpha(objects: list[Object3D], P2: np.ndarray) -> list[Object3D]:
    """MonoDETR's heading target: alpha = rotation_y - atan2(u - cu, fu) with u the centre
    column of the label's 2-D box (original pixels, the frame's own P2, before any flip; a flip
    then maps it to pi - alpha like the label's alpha, which the exact flip of P2 makes exact)."""
    fu, cu = float(P2[0, 0]), float(P2[0, 2])
    return [replace(o, alpha=float(alpha_from_rotation_y(o.rotation_y, (o.box2d[0] + o.box2d[2]) / 2 - cu, fu)))
            for o in objects]


def image_item(image: np.ndarray, P2: np.ndarray, frame: str, cfg: dict, input_size: tuple[int, int],
               choice: aug.Augmentation | None = None) -> tuple[dict, np.ndarray]:
    """The image part of an item and the input affine (original pixels -> input pixels,
    (2, 3)): ``image`` (3, H_in, W_in) normalised by ``cfg`` (the data section's ``mean``,
    ``std``, ``resize``; outside the source :func:`image_padding`), ``P2`` (3, 4) of the
    input, ``P2_original``, ``input_to_original`` (2, 3), ``image_size`` (W, H) of the
    original, ``frame_id``, ``flipped``. ``image``: (H, W, 3) uint8 RGB; ``choice``: the
    augmentation (none by default)."""
    choice = choice or aug.Augmentation()
    image_size = (image.shape[1], image.shape[0])
    affine = aug.input_affine(choice, image_size, input_size, cfg["resize"])
    mean = np.asarray(cfg["mean"], dtype=np.float32)
    std = np.asarray(cfg["std"], dtype=np.float32)
    warped = aug.warp(image, affine, input_size, border=image_padding(cfg))
    normalised = (warped.astype(np.float32) / 255.0 - mean) / std
    return {
        "image": torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1))),
        "P2": torch.as_tensor(aug.camera_matrix(P2, affine, choice.flip), dtype=torch.float32),
        "P2_original": torch.as_tensor(P2, dtype=torch.float32),
        "input_to_original": torch.as_tensor(aug.invert(affine), dtype=torch.float32),
        "image_size": torch.tensor(image_size, dtype=torch.long),
        "frame_id": frame,
        "flipped": choice.flip,
    }, affine


def image_padding(cfg: dict):
    """The image's value outside the source: 0, or with ``resize: pad`` the mean (0 once
    normalised, CaDDN's padding)."""
    if cfg["resize"] != "pad":
        return 0
    return tuple(float(m) * 255.0 for m in cfg["mean"])


def _input_camera(calib: Calibration, P2: np.ndarray, flip: bool) -> Calibration:
    """The calibration of the augmented frame: LiDAR -> (mirrored) rect -> input pixels."""
    camera = calib.copy()
    camera.P2 = P2
    if flip:
        camera.R0_rect = np.diag([-1.0, 1.0, 1.0]) @ calib.R0_rect
    return camera


_LONG_KEYS = ("labels", "occlusion", "difficulty")
_TARGET_WIDTH = {"boxes_2d": 4, "centers_3d_proj": 2, "dims": 3, "location": 3}


def _tensor(key: str, value: np.ndarray) -> torch.Tensor:
    dtype = torch.long if key in _LONG_KEYS else torch.float32
    shape = (-1, _TARGET_WIDTH[key]) if key in _TARGET_WIDTH else (-1,)
    return torch.as_tensor(value.astype(np.float64 if dtype == torch.float32 else np.int64), dtype=dtype).reshape(shape)


def empty_targets() -> dict:
    return {k: _tensor(k, np.zeros(0)) for k in TARGET_KEYS}


def build_dataset(cfg: dict, split: str, train: bool) -> KittiDataset:
    """The KITTI-layout dataset of ``split`` under ``data.root`` (augmented as ``data.augment``
    says when ``train``; evaluation is never augmented)."""
    return KittiDataset(get(cfg, "data.root"), split, cfg, augment=None if train else False)


def collate(items: list[dict]) -> dict:
    """Stack dataset items into the batch of docs/architecture.md."""
    batch = {
        "images": torch.stack([i["image"] for i in items]),
        "P2": torch.stack([i["P2"] for i in items]),
        "P2_original": torch.stack([i["P2_original"] for i in items]),
        "input_to_original": torch.stack([i["input_to_original"] for i in items]),
        "image_sizes": torch.stack([i["image_size"] for i in items]),
        "frame_ids": [i["frame_id"] for i in items],
        "flipped": torch.tensor([bool(i["flipped"]) for i in items]),
        "targets": [copy.copy(i["targets"]) for i in items],
        "labeled": torch.tensor([bool(i.get("labeled", True)) for i in items]),
    }
    if all("lidar_to_rect" in i for i in items):
        batch["lidar_to_rect"] = torch.stack([i["lidar_to_rect"] for i in items])
    if all("depth_map" in i for i in items):
        batch["depth_maps"] = torch.stack([i["depth_map"] for i in items])
    if all("proposals" in i for i in items):
        batch["proposals"] = [i["proposals"] for i in items]
    if all("depth_pred" in i for i in items):
        batch["depth_pred"] = torch.stack([i["depth_pred"] for i in items])
    if all("points" in i for i in items):
        batch["points"] = [i["points"] for i in items]
    return batch
