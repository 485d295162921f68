"""PatchNet's outputs -> KITTI detections in original image coordinates, one per 2-D box.

heading = bin centre + residual, size = cluster mean + residual (coding.py); the centre and
the heading are rotated back from the frustum frame (rotation_y = heading + frustum angle);
location = the bottom centre (y + h/2, y down); alpha from rotation_y and the centre's ray.
2-D box: the input box mapped through ``input_to_original`` (monodetr.decode.to_original).
score (``model.decode.score``): ``detection_2d``, the 2-D detection's score alone (PatchNet's
tester writes the 2-D detector's probability), or ``combined``, 2-D score x p(heading bin) x
p(size cluster) (monokd's: a 3-D confidence ranks the boxes of one 2-D score, e.g. GT boxes);
boxes scoring below ``min_score`` are dropped.
"""

from __future__ import annotations

import math

import torch

from monokd.data.kitti import Object3D
from monokd.geometry.boxes import alpha_from_rotation_y, wrap_angle
from monokd.models.monodetr.decode import to_original
from monokd.models.patchnet.coding import NUM_HEADING_BIN, class_to_angle, class_to_size, mean_sizes
from monokd.models.patchnet.patches import rotate_about_y

SCORES = ("combined", "detection_2d")


@torch.no_grad()
def decode_boxes(outputs: dict) -> dict:
    """Per patch: ``centre`` (N, 3) camera frame, ``dims`` (N, 3), ``rotation_y`` (N,), ``confidence`` (N,)."""
    heading_prob = outputs["heading_scores"].softmax(-1)
    size_prob = outputs["size_scores"].softmax(-1)
    heading_p, heading_cls = heading_prob.max(-1)
    size_p, size_cls = size_prob.max(-1)
    rows = torch.arange(len(heading_cls), device=heading_cls.device)
    residual = outputs["heading_residuals_normalized"][rows, heading_cls] * (math.pi / NUM_HEADING_BIN)
    size_res = outputs["size_residuals_normalized"][rows, size_cls]
    dims = class_to_size(size_cls, size_res * mean_sizes().to(size_res)[size_cls])
    angle = outputs["frustum_angle"]
    centre = rotate_about_y(outputs["center"], -angle)
    rotation_y = wrap_angle(class_to_angle(heading_cls, residual) + angle)
    return {"centre": centre, "dims": dims, "rotation_y": rotation_y, "confidence": heading_p * size_p}


@torch.no_grad()
def decode_patches(outputs: dict, batch: dict, classes: list[str], min_score: float = 0.0,
                   score: str = "combined") -> list[list[Object3D]]:
    """One Object3D per 2-D box of ``batch["proposals"]`` (see the module docstring)."""
    if score not in SCORES:
        raise ValueError(f"score: {score!r} is not one of {SCORES}")
    flipped = batch.get("flipped")
    if flipped is not None and bool(torch.as_tensor(flipped).any()):
        raise ValueError("decode_patches: batch['flipped'] is set; decode only unflipped (eval) batches")
    counts = [len(p["boxes"]) for p in batch["proposals"]]
    boxes = decode_boxes(outputs)
    location = boxes["centre"] + torch.stack([torch.zeros_like(boxes["dims"][:, 0]), boxes["dims"][:, 0] / 2,
                                              torch.zeros_like(boxes["dims"][:, 0])], -1)
    alpha = alpha_from_rotation_y(boxes["rotation_y"], boxes["centre"][:, 0], boxes["centre"][:, 2])
    score = outputs["scores_2d"] * (boxes["confidence"] if score == "combined" else 1.0)
    results = []
    start = 0
    for b, n in enumerate(counts):
        part = slice(start, start + n)
        start += n
        box2d = to_original(batch["proposals"][b]["boxes"][None].double(), batch["input_to_original"][b:b + 1].double(),
                            batch["image_sizes"][b:b + 1])[0].numpy()
        values = [x[part].double().cpu().numpy() for x in (boxes["dims"], location, boxes["rotation_y"], alpha, score)]
        labels = outputs["labels"][part].cpu().numpy()
        dims, loc, ry, al, sc = values
        results.append([Object3D(type=classes[labels[i]], truncated=0.0, occluded=0, alpha=float(al[i]),
                                 box2d=box2d[i].copy(), h=float(dims[i, 0]), w=float(dims[i, 1]), l=float(dims[i, 2]),
                                 location=loc[i].copy(), rotation_y=float(ry[i]), score=float(sc[i]))
                        for i in range(n) if sc[i] >= min_score])
    return results
