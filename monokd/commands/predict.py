"""``monokd predict --ckpt CKPT --images DIR --calib FILE_OR_DIR --out DIR [--config CFG]``:
run a checkpoint on images without labels. Writes OUT/data/<stem>.txt (KITTI result lines)
and OUT/pictures/<stem>.png (3-D boxes on the image and a bird's-eye view).

``--calib`` is one calib file for every image, or a directory of per-image calib files
named like the images (<stem>.txt). A calib file is KITTI's; a file holding only the
``P2:`` line is accepted too. The config is the one stored in the checkpoint unless
``--config`` is given; ``--set`` applies to whichever it is.

The pictures show every box the result files hold, i.e. every box the model decoded above its
own decode threshold (MonoDETR ``model.decode.threshold``, CaDDN / MonoTAKD
``model.anchor_head.score_threshold``, PatchNet ``model.decode.min_score``);
``--score-threshold`` hides weaker ones in the pictures only, and ``--set`` on the model's
key decodes weaker ones too. A detector that needs more than an image and its calib
(PatchNet: a depth map and 2-D boxes; a teacher fed ground truth; monokd/serving/servable.py)
is refused before anything is written.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from monokd.config import load_config
from monokd.data import augment as aug
from monokd.data.checks import check_principal_point, image_size
from monokd.data.dataset import collate, data_config, empty_targets
from monokd.data.kitti import (IMAGE_SUFFIXES, KittiFormatError, check_camera_matrix, parse_number, read_calib,
                               read_image, read_lines, write_image)
from monokd.geometry.calib import AXES_VELO_TO_CAM, velo_to_rect_matrix
from monokd.training.checkpoint import checkpoint_config, load_detector, read_checkpoint
from monokd.training.inference import detect
from monokd.serving.servable import decode_threshold, unserved
from monokd.errors import ConfigError, MonokdWarning
from monokd.evaluation import write_results
from monokd.viz.draw import render_frame_picture


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoint (from monokd train or export)")
    parser.add_argument("--images", required=True, help="directory of images (.png, .jpg)")
    parser.add_argument("--calib", required=True, help="one calib file for all images, or a directory of <stem>.txt")
    parser.add_argument("--out", required=True, help="output directory (data/ results, pictures/)")
    parser.add_argument("--config", default=None, help="config (default: the one stored in the checkpoint)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--batch-size", type=int, default=1, help="images a batch (default 1)")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="hide weaker boxes in the pictures (default: none hidden, i.e. the model's own decode "
                             "threshold; to see weaker boxes lower that with --set, see docs/training.md)")
    parser.add_argument("--no-pictures", action="store_true", help="write the result files only")


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
        image = read_image(self.paths[index])
        P2 = self._P2[self.calib_files[index]]
        image_size = (image.shape[1], image.shape[0])
        affine = aug.input_affine(aug.Augmentation(), image_size, self.input_size, self.cfg["resize"])
        mean = np.asarray(self.cfg["mean"], dtype=np.float32)
        std = np.asarray(self.cfg["std"], dtype=np.float32)
        warped = (aug.warp(image, affine, self.input_size).astype(np.float32) / 255.0 - mean) / std
        return {
            "image": torch.from_numpy(np.ascontiguousarray(warped.transpose(2, 0, 1))),
            "P2": torch.as_tensor(aug.camera_matrix(P2, affine, False), dtype=torch.float32),
            "P2_original": torch.as_tensor(P2, dtype=torch.float32),
            "input_to_original": torch.as_tensor(aug.invert(affine), dtype=torch.float32),
            "image_size": torch.tensor(image_size, dtype=torch.long),
            "frame_id": self.paths[index].stem,
            "flipped": False,
            "lidar_to_rect": torch.as_tensor(self._lidar_to_rect[self.calib_files[index]], dtype=torch.float32),
            "targets": empty_targets(),
        }


def shown(objects: list, score_threshold: float | None = None) -> list:
    """The detections a picture shows: all (None: the model's decode threshold already applied),
    else those scoring at least ``score_threshold`` (an object without a score is kept)."""
    if score_threshold is None:
        return list(objects)
    return [o for o in objects if o.score is None or o.score >= score_threshold]


def pictures_note(model, score_threshold: float | None = None) -> str:
    """Which boxes the pictures show, in words. Warns when ``score_threshold`` is below the
    model's decode threshold: it then hides nothing, the weaker boxes were never decoded."""
    decoded = decode_threshold(model)
    if score_threshold is None:
        return f"every box the model decoded ({decoded[0]} = {decoded[1]:g})" if decoded else "every decoded box"
    if decoded and score_threshold < decoded[1]:
        key, value = decoded
        warnings.warn(MonokdWarning(f"--score-threshold {score_threshold:g} is below the model's decode threshold "
                                    f"{key} = {value:g}: no weaker box was decoded; to see them, "
                                    f"--set {key}={score_threshold:g}"))
    return f"boxes scoring at least {score_threshold:g} (--score-threshold)"


def draw_pictures(dataset: ImageFolder, detections: dict, out: Path, score_threshold: float | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for path, calib in zip(dataset.paths, dataset.calib_files):
        preds = shown(detections.get(path.stem, []), score_threshold)
        picture = render_frame_picture(read_image(path), dataset._P2[calib], None, preds, title=path.stem)
        write_image(out / f"{path.stem}.png", picture)
    return len(dataset.paths)


def predict(args: argparse.Namespace) -> int:
    checkpoint = read_checkpoint(args.ckpt)
    # --set: on --config, else on the checkpoint's own config
    cfg = load_config(args.config, args.set) if args.config else checkpoint_config(checkpoint, args.ckpt, args.set)
    dataset = ImageFolder(args.images, args.calib, cfg)  # the inputs checked before the model is built
    model, cfg = load_detector(args.ckpt, cfg, checkpoint=checkpoint)
    if unserved(model, cfg):  # before anything is written
        raise ConfigError(f"{args.ckpt}: {unserved(model, cfg)}; predict on new images is not supported for it "
                          f"yet: use `monokd evaluate --ckpt {args.ckpt} --split SPLIT --out DIR` on a KITTI-layout "
                          "folder (--set data.root=...)")
    note = None if args.no_pictures else pictures_note(model, args.score_threshold)  # warns before the run
    out = Path(args.out)
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate)
    detections = detect(model, loader, progress=sys.stdout.isatty())
    write_results(out / "data", detections)
    print(f"wrote {len(detections)} result files to {out / 'data'}")
    if not args.no_pictures:
        count = draw_pictures(dataset, detections, out / "pictures", args.score_threshold)
        print(f"wrote {count} pictures to {out / 'pictures'}: {note}")
    return 0


def run(args: argparse.Namespace) -> int:
    return predict(args)  # errors: monokd.cli prints them as one line
