"""What several test files share: fakes, tiny configs, fake data roots and picture readers.

Test files import from here (or take a fixture of tests/conftest.py), never from one another.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from monokd.data import kitti
from monokd.data.kitti import Object3D, write_label
from monokd.geometry.boxes import alpha_from_rotation_y, box_center, project_boxes
from monokd.geometry.calib import project, transform_intrinsics
from monokd.models import build_detector
from monokd.models.monodetr.box_coding import angle_to_bin, encode_boxes
from monokd.training.datamodule import KittiDataModule
from monokd.training.fit import fit
from monokd.viz.report import LEVELS

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


# --------------------------------------------------------------------------- KITTI-layout roots

FLIP_AND_ZOOM = {"augment": {"photometric": False, "flip_prob": 1.0, "scale_prob": 1.0}}
# A camera whose principal point is off the image centre (cu != (W - 1) / 2), for 220 x 64 frames.
DATASET_P2 = np.array([[200.0, 0, 90.0, 12.0], [0, 200, 30, 0.2], [0, 0, 1, 0.003]])


def label(kind, dims, loc, ry, P=DATASET_P2, truncated=0.0, occluded=0, size=(220, 64)):
    """An object whose 2-D box is the projection of its 3-D box (as KITTI's labels nearly are)."""
    box = project_boxes(np.array([dims]), np.array([loc]), np.array([ry]), P, image_size=size)[0]
    return Object3D(kind, truncated, occluded, float(alpha_from_rotation_y(ry, loc[0], loc[2])), box,
                          *dims, np.array(loc, dtype=float), ry)


def write_frame(root: Path, frame: str, objects, size=(220, 64), points=None, depth=None, part="training"):
    """One frame of random pixels under ``root`` with DATASET_P2 (and labels, a sweep, a depth map)."""
    rng = np.random.default_rng(int(frame))
    kitti.write_image(root / part / "image_2" / f"{frame}.png", rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    kitti.write_calib(root / part / "calib" / f"{frame}.txt",
                      kitti.Calibration(P0=DATASET_P2, P1=DATASET_P2, P2=DATASET_P2, P3=DATASET_P2, R0_rect=np.eye(3),
                                        Tr_velo_to_cam=np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0.0]])))
    if objects is not None:
        kitti.write_label(root / part / "label_2" / f"{frame}.txt", objects)
    if points is not None:
        kitti.write_velodyne(root / part / "velodyne" / f"{frame}.bin", points)
    if depth is not None:
        kitti.write_depth(root / part / "depth_2" / f"{frame}.png", depth)


def write_tiny_root(root: Path) -> Path:
    """Three frames: two cars and a pedestrian; only a DontCare; a car too near to supervise."""
    write_frame(root, "000000", [label("Car", (1.5, 1.6, 3.9), (-2.0, 1.6, 12.0), 0.3),
                                 label("Pedestrian", (1.7, 0.6, 0.8), (1.5, 1.4, 10.0), -1.2, occluded=1),
                                 label("Car", (1.5, 1.6, 3.9), (3.0, 1.6, 25.0), -2.0)])
    write_frame(root, "000001", [kitti.parse_label_line(
        "DontCare -1 -1 -10 5.00 10.00 30.00 40.00 -1 -1 -1 -1000 -1000 -1000 -10")])
    write_frame(root, "000002", [label("Car", (1.5, 1.6, 3.9), (0.0, 1.6, 1.5), 0.0)])
    kitti.write_split(root / "ImageSets" / "train.txt", ["000000", "000001", "000002"])
    return root


def kitti_symlink_root(samples: Path, dest: Path, frames) -> Path:
    """A KITTI root of links to the real frames (never copies) with an ImageSets/val.txt."""
    for kind, ext in (("image_2", "png"), ("calib", "txt"), ("label_2", "txt"), ("velodyne", "bin")):
        (dest / "training" / kind).mkdir(parents=True, exist_ok=True)
        for frame in frames:
            src = samples / "training" / kind / f"{frame}.{ext}"
            if src.is_file():
                (dest / "training" / kind / f"{frame}.{ext}").symlink_to(src)
    kitti.write_split(dest / "ImageSets" / "val.txt", list(frames))
    return dest


# --------------------------------------------------------------------------- the demo's fakes

DEMO_P2 = np.array([[200.0, 0, 208, 0], [0, 200.0, 64, 0], [0, 0, 1, 0]])  # 416 x 128 frames
FLAT_KEY = "Car/{}/{}/R40@{}"


def flat(base: float) -> dict[str, float]:
    """Fake evaluation metrics: AP = base + 10 at IoU 0.5 + 5 for BEV - the level's index."""
    out = {}
    for i, iou in enumerate(("0.70", "0.50")):
        for j, metric in enumerate(("3d", "bev")):
            for k, level in enumerate(LEVELS):
                out[FLAT_KEY.format(metric, level, iou)] = base + 10 * i + 5 * j - k
    return out


def car(x: float, z: float, score: float | None = None):
    """A car at (x, 1.6, z) with a fixed 2-D box (a detection when ``score`` is given)."""
    return Object3D("Car", 0.0, 0, 0.0, np.array([100.0, 40, 160, 90]), 1.5, 1.6, 3.9,
                    np.array([x, 1.6, z]), 0.3, score)


def fake_root(root, frames=("000000", "000001", "000002")):
    """A KITTI-layout root of blank 416x128 frames; frame k holds k cars."""
    calib = kitti.Calibration(DEMO_P2, DEMO_P2, DEMO_P2, DEMO_P2)
    for k, frame in enumerate(frames):
        kitti.write_image(root / "training" / "image_2" / f"{frame}.png", np.full((128, 416, 3), 90, np.uint8))
        kitti.write_calib(root / "training" / "calib" / f"{frame}.txt", calib)
        kitti.write_label(root / "training" / "label_2" / f"{frame}.txt", [car(2.0 * i, 15.0 + 5 * i) for i in range(k)])
    kitti.write_split(root / "ImageSets" / "train.txt", list(frames))
    kitti.write_split(root / "ImageSets" / "val.txt", list(frames))
    return root


# --------------------------------------------------------------------------- the engine's fakes


class FakeRegressor(nn.Module):
    """Regresses each frame's first object depth from the image; dropout exercises the RNG."""

    def __init__(self, width: int = 4, sqrt_loss: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(width, 1)
        self.sqrt_loss = sqrt_loss

    def forward(self, batch: dict) -> dict:
        features = self.drop(self.conv(batch["images"]).relu().mean((2, 3)))
        return {"depth": self.head(features).squeeze(1) + 10.0}

    def losses(self, outputs: dict, batch: dict) -> dict:
        target = torch.stack([t["depth"][0] for t in batch["targets"]])
        error = (outputs["depth"] - target).abs().mean()
        if self.sqrt_loss:  # finite loss, infinite gradient (d sqrt(x)/dx at 0)
            error = (error - error.detach()).sqrt()
        return {"loss": error, "depth": error.detach()}

    def decode(self, outputs: dict, batch: dict) -> list[list[Object3D]]:
        return [[Object3D("Car", 0.0, 0, 0.0, np.array([10.0, 10.0, 60.0, 50.0]), 1.5, 1.6, 3.9,
                          np.array([0.0, 1.6, float(z)]), 0.0, 0.9)]
                for z in outputs["depth"].detach().double()]


class FakeFrames(torch.utils.data.Dataset):
    """Frames with one Car each; train-time noise drawn from the global torch and NumPy
    generators, as an augmentation would. Labels are written under ``root``."""

    def __init__(self, root: Path, n: int, offset: int = 0, augment: bool = True, nan=False):
        self.ids = [f"{i + offset:06d}" for i in range(n)]
        self.augment = augment
        self.nan = set(range(n)) if nan is True else set(nan or ())  # frames with a NaN image
        for i, frame in enumerate(self.ids):
            write_label(Path(root) / "training" / "label_2" / f"{frame}.txt",
                        [Object3D("Car", 0.0, 0, 0.0, np.array([10.0, 10.0, 60.0, 50.0]), 1.5, 1.6, 3.9,
                                  np.array([0.0, 1.6, 10.0 + i]), 0.0)])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image = torch.full((3, 8, 8), float(index) / len(self))
        if self.augment:
            image = image + 0.1 * torch.rand(3, 8, 8) + float(np.random.rand())
        if index in self.nan:
            image = torch.full_like(image, float("nan"))
        return {"image": image, "frame_id": self.ids[index],
                "targets": {"depth": torch.tensor([10.0 + index])}}




def fake_collate(items: list[dict]) -> dict:
    return {"images": torch.stack([i["image"] for i in items]), "frame_ids": [i["frame_id"] for i in items],
            "targets": [i["targets"] for i in items]}


def engine_cfg(root: Path, **train) -> dict:
    """The tiny training config of the engine's fakes (``train`` keys override)."""
    base = {"epochs": 2, "batch_size": 2, "lr": 0.05, "weight_decay": 1e-4, "lr_milestones": [1],
            "lr_gamma": 0.1, "warmup_epochs": 0.5, "grad_clip": 1.0, "num_workers": 0, "seed": 7,
            "val_every": 1, "ckpt_every_steps": 2, "max_nonfinite": 20, "log_every": 1}
    return {"data": {"root": str(root), "classes": ["Car"]}, "eval": {"classes": ["Car"]},
            "train": {**base, **train}}


def fake_data(root: Path, cfg: dict, n_train: int = 6, n_val: int = 2, **kw) -> KittiDataModule:
    return KittiDataModule(cfg, FakeFrames(root, n_train, **kw), FakeFrames(root, n_val, offset=100, augment=False),
                           fake_collate)


def run_fake(root: Path, out: Path, cfg: dict, model=None, **kw):
    """``fit`` of the FakeRegressor on FakeFrames under ``root``, written to ``out``."""
    torch.manual_seed(0)  # the config's seed must override whatever state the caller left
    return fit(cfg, out, model=model or FakeRegressor(), datamodule=fake_data(root, cfg, **kw.pop("data", {})),
               progress_bar=False, **kw)


# --------------------------------------------------------------------------- tiny models and batches

# `monokd train --set` items of a tiny MonoDETR run (4 frames overfit in seconds).
TINY_MONODETR = ["data.input_size=[256, 80]", "model.hidden_dim=32", "model.nheads=4", "model.enc_layers=1",
                 "model.dec_layers=2", "model.dim_feedforward=64", "model.num_queries=10", "model.dropout=0.0",
                 "model.decode.topk=10", "data.augment.enabled=false", "train.batch_size=4", "train.lr=1.0e-3",
                 "train.warmup_epochs=0", "train.lr_milestones=[]", "train.grad_clip=1.0", "train.num_workers=0",
                 "train.ckpt_every_steps=0", "train.log_every=1", "train.seed=0"]

MONODETR_H, MONODETR_W = 96, 320
MONODETR_CLASSES = ["Car", "Pedestrian"]


def monodetr_cfg(**model) -> dict:
    """A tiny MonoDETR (ResNet-18, 32 channels, 8 queries) over MONODETR_CLASSES."""
    cfg = {"name": "monodetr", "backbone": {"depth": 18, "weights": None, "frozen_stages": 1, "norm": "frozen"},
           "hidden_dim": 32, "nheads": 4, "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 64,
           "num_queries": 8, "enc_n_points": 2, "dec_n_points": 2, "depth": {"num_bins": 20, "min": 1e-3, "max": 60}}
    cfg.update(model)
    return {"model": cfg, "data": {"classes": MONODETR_CLASSES}}


def monodetr_batch(batch_size: int = 2, depths=(12.0, 25.0)) -> dict:
    """Random 320 x 96 images; the first holds a car and a pedestrian at ``depths``, the others nothing."""
    torch.manual_seed(0)
    P2 = torch.tensor([[250.0, 0, 160, 4.5], [0, 250.0, 48, 0.2], [0, 0, 1, 0.003]])
    target = {"labels": torch.tensor([0, 1]),
              "boxes_2d": torch.tensor([[10.0, 20, 90, 70], [150, 30, 200, 90]]),
              "centers_3d_proj": torch.tensor([[50.0, 45], [175, 60]]),
              "depth": torch.tensor(depths), "dims": torch.tensor([[1.5, 1.6, 3.9], [1.7, 0.6, 0.8]]),
              "alpha": torch.tensor([0.3, -1.0]), "rotation_y": torch.tensor([0.5, -0.8])}
    empty = {k: v[:0] for k, v in target.items()}
    H, W = MONODETR_H, MONODETR_W
    return {"images": torch.randn(batch_size, 3, H, W),
            "P2": P2.expand(batch_size, 3, 4).clone(), "P2_original": P2.expand(batch_size, 3, 4).clone(),
            "input_to_original": torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(batch_size, 2, 3).clone(),
            "image_sizes": torch.tensor([[W, H]] * batch_size), "frame_ids": [f"{i:06d}" for i in range(batch_size)],
            "flipped": torch.zeros(batch_size, dtype=torch.bool),
            "targets": [target] + [empty] * (batch_size - 1)}


# MonoDETR's decoding on KITTI training frame 000000's camera, resized to 1280 x 384.
DECODE_P2_ORIGINAL = np.array([[721.5377, 0.0, 609.5593, 44.85728],
                               [0.0, 721.5377, 172.854, 0.2163791],
                               [0.0, 0.0, 1.0, 0.002745884]])
DECODE_ORIGINAL_SIZE = (1242, 375)
DECODE_W, DECODE_H = 1280, 384
DECODE_P2_INPUT = transform_intrinsics(
    DECODE_P2_ORIGINAL, np.array([[DECODE_W / DECODE_ORIGINAL_SIZE[0], 0.0, 0.0],
                                  [0.0, DECODE_H / DECODE_ORIGINAL_SIZE[1], 0.0]]))
DECODE_CLASSES = ("Car", "Pedestrian")
# Ground truth: bottom centre location, dims h w l, rotation_y.
DECODE_GT = [((-3.2, 1.65, 14.0), (1.52, 1.63, 3.88), 1.57, "Car"),
             ((4.1, 1.70, 33.5), (1.48, 1.60, 4.10), -3.1, "Car"),
             ((-8.0, 1.60, 45.0), (1.75, 0.60, 0.80), 3.13, "Pedestrian")]


def decode_batch(flipped=False) -> dict:
    """One blank 1280 x 384 input of the resized 000000 camera."""
    to_original = np.array([[DECODE_ORIGINAL_SIZE[0] / DECODE_W, 0.0, 0.0],
                            [0.0, DECODE_ORIGINAL_SIZE[1] / DECODE_H, 0.0]])
    return {"images": torch.zeros(1, 3, DECODE_H, DECODE_W),
            "P2": torch.tensor(DECODE_P2_INPUT, dtype=torch.float32)[None],
            "input_to_original": torch.tensor(to_original, dtype=torch.float32)[None],
            "image_sizes": torch.tensor([DECODE_ORIGINAL_SIZE]),
            "flipped": torch.tensor([flipped])}


def perfect_outputs(logvar=0.0) -> dict:
    """Float32 MonoDETR outputs that encode DECODE_GT exactly (query 3 is a low-scoring extra)."""
    queries = len(DECODE_GT) + 1
    out = {"pred_logits": torch.full((1, queries, 2), -5.0), "pred_boxes": torch.full((1, queries, 6), 0.1),
           "pred_dims": torch.ones(1, queries, 3), "pred_angle": torch.zeros(1, queries, 24),
           "pred_depth": torch.tensor([[[20.0, logvar]] * queries])}
    for q, (location, dims, ry, kind) in enumerate(DECODE_GT):
        location, dims = np.array(location), np.array(dims)
        centre = box_center(dims, location)
        uv, depth = project(centre[None], DECODE_P2_INPUT)
        box = project_boxes(dims[None], location[None], np.array([ry]), DECODE_P2_INPUT)
        alpha = alpha_from_rotation_y(ry, centre[0], centre[2])
        heading_bin, residual = angle_to_bin(torch.tensor([alpha], dtype=torch.float64))
        out["pred_logits"][0, q, DECODE_CLASSES.index(kind)] = 3.0
        out["pred_boxes"][0, q] = encode_boxes(torch.tensor(box), torch.tensor(uv), (DECODE_W, DECODE_H)).float()[0]
        out["pred_dims"][0, q] = torch.tensor(dims)
        out["pred_angle"][0, q, heading_bin] = 10.0
        out["pred_angle"][0, q, 12 + heading_bin] = residual.float()
        out["pred_depth"][0, q, 0] = float(depth[0])
    return out


CADDN_TINY = {
    "name": "caddn", "backbone": {"depth": 18, "norm": "batch", "dilation": [False, False, True]},
    "image_channels": 8, "depth_head": {"channels": 8, "rates": [1, 2, 3], "dropout": 0.0},
    "depth": {"num_bins": 12, "min": 2.0, "max": 22.48},
    "grid": {"point_cloud_range": [2, -10.24, -3, 22.48, 10.24, 1], "voxel_size": [0.64, 0.64, 1.0]},
    "bev_channels": 16, "bev_bn_momentum": 0.1,
    "bev_backbone": {"layer_nums": [1, 1], "layer_strides": [1, 2], "num_filters": [16, 32],
                     "upsample_strides": [1, 2], "num_upsample_filters": [16, 16]},
}


def caddn_model(depth_input=None, **cfg):
    """A tiny CaDDN (CADDN_TINY with ``cfg`` over it) for the class Car."""
    model = {**CADDN_TINY, "depth_input": depth_input, **cfg}
    return build_detector({"data": {"classes": ["Car"], "depth_maps": "depth_2"}, "model": model})


PATCHNET_SMALL = {"name": "patchnet", "patch_size": 16, "center_channels": [32, 32, 64], "center_hidden": [64, 32],
                  "backbone": {"widths": [16, 32, 64, 128], "blocks": [1, 1, 1, 1]}, "head_hidden": [128, 64],
                  "dropout": 0.0}


def one_error(capsys, argv: list[str]) -> str:
    """Run the CLI; assert exit 1 and exactly one stderr line ``monokd <cmd>: error: ...``."""
    from monokd.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"monokd {argv[0]}: error: "), err
    return lines[0]


def fake_commands(calls):
    """A stand-in for the demo's ``monokd train`` / ``monokd evaluate`` (``stages.run_command``)
    writing their documented outputs for a teacher, a baseline and ADD; ``calls`` gets each
    command's arguments."""
    import json
    import os

    from monokd.data import kitti

    def run(args, stage, **options):
        calls.append(args)
        out = args[args.index("--out") + 1]
        os.makedirs(out, exist_ok=True)
        if args[0] == "train":
            for name in ("config.yaml", "best.ckpt"):
                open(os.path.join(out, name), "w").write("{}")
            base = {"teacher": 30.0, "baseline": 10.0, "add": 15.0}[os.path.basename(out)]
            history = [{"epoch": e, "step": 10 * (e + 1), "metrics": flat(base - 3 + e)} for e in range(3)]
            open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"validations": history}))
            return
        base = {"teacher": 30.0, "baseline": 10.0, "add": 15.0}[os.path.basename(out)]
        open(os.path.join(out, "metrics.json"), "w").write(json.dumps({"flat": flat(base)}))
        kitti.write_label(os.path.join(out, "data", "000002.txt"), [car(0.5, 16.0, 0.9), car(3.0, 30.0, 0.1)])
    return run
