"""Between the batch's KITTI targets and the BEV core's LiDAR boxes, both ways.

    targets (rect bottom centre, h w l, rotation_y) --lidar_to_rect^-1--> LiDAR 7-D GT boxes
    decoded LiDAR boxes --lidar_to_rect--> KITTI boxes --P2--> 2-D box in input pixels
        --input_to_original--> Object3D in original image coordinates (a KITTI result line)

The conversions themselves are monokd.geometry.boxes' (rect_to_lidar_boxes,
lidar_to_rect_boxes). The 2-D box is the extent of the projected 3-D corners (the part in
front of the camera), clipped to the input image, mapped to the original image and clipped
to it. truncated and occluded are written as 0 (the devkit reads them only from GT).
"""

from __future__ import annotations

import torch

from monokd.data.kitti import Object3D
from monokd.geometry.boxes import alpha_from_rotation_y, lidar_to_rect_boxes, project_boxes, rect_to_lidar_boxes


def gt_boxes_lidar(batch: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The batch's targets as B LiDAR box tensors (M_b, 7) and B label tensors (M_b,)."""
    boxes, labels = [], []
    for target, matrix in zip(batch["targets"], batch["lidar_to_rect"]):
        boxes.append(rect_to_lidar_boxes(target["dims"].float(), target["location"].float(),
                                         target["rotation_y"].float(), matrix).reshape(-1, 7))
        labels.append(target["labels"])
    return boxes, labels


def _to_original(boxes: torch.Tensor, affine: torch.Tensor, image_size) -> torch.Tensor:
    """(K, 4) input-pixel boxes -> original pixels through a (2, 3) affine, clipped to the
    original (W, H)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    corners = torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1),
                           torch.stack([x1, y2], -1), torch.stack([x2, y2], -1)], dim=-2)  # (K, 4, 2)
    mapped = corners @ affine[:, :2].T + affine[:, 2]
    out = torch.cat([mapped.min(dim=-2).values, mapped.max(dim=-2).values], dim=-1)
    width, height = (float(s) for s in image_size)
    upper = out.new_tensor([width - 1, height - 1, width - 1, height - 1])
    return torch.minimum(out.clamp(min=0), upper)


@torch.no_grad()
def to_objects(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, class_names, batch: dict,
               index: int) -> list[Object3D]:
    """Detections of image ``index`` of ``batch`` as KITTI objects in original image coordinates.

    Args:
        boxes: (K, 7) LiDAR boxes.  scores: (K,).  labels: (K,) indices into ``class_names``.
        batch: ``lidar_to_rect``, ``P2``, ``input_to_original``, ``image_sizes``, ``images``,
            and optionally ``flipped``.
    Raises:
        ValueError for a horizontally flipped image (a training augmentation: its boxes have no
        place in the original image).
    """
    if "flipped" in batch and bool(torch.as_tensor(batch["flipped"])[index]):
        raise ValueError("to_objects: batch['flipped'] is set; decode only unflipped (eval) batches")
    if boxes.numel() == 0:
        return []
    boxes = boxes.detach().double().cpu()
    dims, location, rotation_y = lidar_to_rect_boxes(boxes, batch["lidar_to_rect"][index].double().cpu())
    alpha = alpha_from_rotation_y(rotation_y, location[:, 0], location[:, 2])
    height, width = batch["images"].shape[-2:]
    boxes_2d = project_boxes(dims, location, rotation_y, batch["P2"][index].double().cpu(), image_size=(width, height))
    boxes_2d = _to_original(boxes_2d, batch["input_to_original"][index].double().cpu(), batch["image_sizes"][index])
    scores, labels = scores.detach().cpu().tolist(), labels.detach().cpu().tolist()
    return [Object3D(type=class_names[labels[k]], truncated=0.0, occluded=0, alpha=float(alpha[k]),
                     box2d=boxes_2d[k].numpy().copy(), h=float(dims[k, 0]), w=float(dims[k, 1]), l=float(dims[k, 2]),
                     location=location[k].numpy().copy(), rotation_y=float(rotation_y[k]), score=float(scores[k]))
            for k in range(len(scores))]


def decode_head(head, outputs: dict, class_names, batch: dict) -> list[list[Object3D]]:
    """The anchor head's decoded boxes of every frame of ``batch`` as KITTI objects in the
    original image (:func:`to_objects`); ``head`` a monokd.models.bev.anchor_head.AnchorHead."""
    return [to_objects(boxes, scores, labels, class_names, batch, b)
            for b, (boxes, scores, labels) in enumerate(head.decode(outputs))]


@torch.no_grad()
def detections_as_targets(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, batch: dict,
                          index: int, min_score: float) -> dict:
    """Detections of frame ``index`` with score >= ``min_score`` as a target dict of the
    batch's (augmented) frame, the way the dataset writes a GT object: ``labels`` (K,) long,
    ``location`` (K, 3) rect bottom centre, ``dims`` (K, 3) h w l, ``rotation_y`` (K,),
    ``depth`` (K,) z of the 3-D centre (m), ``boxes_2d`` (K, 4) the projected corners'
    extent clipped to the network input (pixels), ``alpha`` (K,).

    Args:
        boxes: (N, 7) LiDAR boxes.  scores: (N,).  labels: (N,) class indices.
        batch: ``lidar_to_rect`` (B, 4, 4), ``P2`` (B, 3, 4) at input resolution, ``images``.
    """
    keep = scores >= min_score
    boxes, labels = boxes[keep].float(), labels[keep].long()
    matrix = batch["lidar_to_rect"][index].to(boxes)
    dims, location, rotation_y = lidar_to_rect_boxes(boxes.reshape(-1, 7), matrix)
    height, width = batch["images"].shape[-2:]
    boxes_2d = (project_boxes(dims, location, rotation_y, batch["P2"][index].to(boxes), image_size=(width, height))
                if len(boxes) else boxes.new_zeros(0, 4))
    return {"labels": labels, "location": location, "dims": dims, "rotation_y": rotation_y,
            "depth": location[:, 2].clone(), "boxes_2d": boxes_2d,
            "alpha": alpha_from_rotation_y(rotation_y, location[:, 0], location[:, 2])}
