"""MonoDETR's outputs -> KITTI detections in original image coordinates.

Per image: the top-k (query, class) pairs by sigmoid probability, those below ``threshold``
dropped, no NMS (the set prediction is already one-to-one). As in MonoDETR, the threshold
applies to the class probability and the reported score is prob * exp(-logvar), the depth
uncertainty's confidence (it may exceed 1; KITTI's evaluation only ranks by it).

Geometry: the projected 3-D centre (u, v) and depth z back-project through the input-resolution
P2 to the 3-D centre; the KITTI location is its bottom centre (y + h/2, y pointing down);
rotation_y = alpha + atan2(x, z) of that centre, the exact inverse of KITTI's alpha (MonoDETR
uses the 2-D box centre's column, an approximation of the same ray: ``heading_ray="box_2d"``,
the pair of the ``data.heading_target: box_center`` training target). The 2-D box is mapped to
original pixels with ``input_to_original`` and clipped to the original image. truncated and occluded are written
as 0: the KITTI devkit reads them only from ground truth.
"""

from __future__ import annotations

import torch

from monokd.data.kitti import Object3D
from monokd.geometry.boxes import rotation_y_from_alpha
from monokd.geometry.calib import unproject
from monokd.models.monodetr.box_coding import cxcylrtb_to_xyxy, decode_heading


HEADING_RAYS = ("centre_3d", "box_2d")


@torch.no_grad()
def decode_detections(outputs: dict, batch: dict, classes: list[str] | tuple[str, ...], topk: int = 50,
                      threshold: float = 0.2, heading_ray: str = "centre_3d") -> list[list[Object3D]]:
    """Detections of each image of ``batch``.

    Args:
        outputs: ``pred_logits`` (B, Q, C), ``pred_boxes`` (B, Q, 6), ``pred_dims`` (B, Q, 3),
            ``pred_angle`` (B, Q, 24), ``pred_depth`` (B, Q, 2).
        batch: ``images`` (for H, W), ``P2`` (B, 3, 4) at input resolution,
            ``input_to_original`` (B, 2, 3), ``image_sizes`` (B, 2) original (W, H), and
            optionally ``flipped`` (B,).
        classes: class name of each logit channel (``data.classes``).
        heading_ray: the ray alpha is relative to: ``centre_3d`` (the decoded 3-D centre,
            KITTI's definition) or ``box_2d`` (MonoDETR's: the 2-D box centre's column u,
            rotation_y = alpha + atan2(u - cu, fu) with the input P2).
    Returns:
        B lists of Object3D (truncated 0, occluded 0, with ``score``), best first.
    Raises:
        ValueError for a horizontally flipped image: flipping is a training augmentation that
        leaves P2 unflipped, so its boxes have no consistent place in the original image.
    """
    logits = outputs["pred_logits"]
    batch_size, _, num_classes = logits.shape
    if len(classes) != num_classes:
        raise ValueError(f"decode_detections: {len(classes)} class names for {num_classes} logits")
    flipped = batch.get("flipped")
    if flipped is not None and bool(torch.as_tensor(flipped).any()):
        raise ValueError("decode_detections: batch['flipped'] is set; decode only unflipped (eval) batches")
    height, width = batch["images"].shape[-2:]
    scale = torch.tensor([width, height], dtype=torch.float64, device=logits.device)

    prob = logits.sigmoid().flatten(1)
    top_prob, top_index = prob.topk(min(topk, prob.shape[1]), dim=1)
    query_index = torch.div(top_index, num_classes, rounding_mode="floor")
    labels = top_index % num_classes

    def gather(key):
        value = outputs[key]
        # float64: the back-projection multiplies pixels by metres; cheap for B x topk rows.
        return value.gather(1, query_index[..., None].expand(-1, -1, value.shape[-1])).double()

    boxes, dims, depth = gather("pred_boxes"), gather("pred_dims"), gather("pred_depth")
    alpha = decode_heading(gather("pred_angle"))
    centres_uv = boxes[..., :2] * scale
    centres = unproject(centres_uv, depth[..., 0], batch["P2"].to(boxes))  # (B, K, 3)
    locations = centres + torch.stack([torch.zeros_like(dims[..., 0]), dims[..., 0] / 2,
                                       torch.zeros_like(dims[..., 0])], dim=-1)
    boxes_input = cxcylrtb_to_xyxy(boxes) * scale.repeat(2)
    if heading_ray == "box_2d":
        P2 = batch["P2"].to(boxes)
        column = (boxes_input[..., 0] + boxes_input[..., 2]) / 2
        rotation_y = rotation_y_from_alpha(alpha, column - P2[:, None, 0, 2], P2[:, None, 0, 0].expand_as(column))
    elif heading_ray == "centre_3d":
        rotation_y = rotation_y_from_alpha(alpha, centres[..., 0], centres[..., 2])
    else:
        raise ValueError(f"decode_detections: heading_ray {heading_ray!r} is not one of {HEADING_RAYS}")
    boxes_2d = to_original(boxes_input, batch["input_to_original"].to(boxes), batch["image_sizes"])
    scores = top_prob * torch.exp(-depth[..., 1])

    # One transfer, then plain numbers: per-element reads of a GPU tensor would each sync.
    keep = (top_prob >= threshold).cpu().numpy()
    labels, scores, alpha, rotation_y = (x.cpu().numpy() for x in (labels, scores, alpha, rotation_y))
    dims, locations, boxes_2d = (x.cpu().numpy() for x in (dims, locations, boxes_2d))
    results = []
    for b in range(batch_size):
        results.append([Object3D(
            type=classes[labels[b, k]], truncated=0.0, occluded=0, alpha=float(alpha[b, k]),
            box2d=boxes_2d[b, k].copy(), h=float(dims[b, k, 0]), w=float(dims[b, k, 1]), l=float(dims[b, k, 2]),
            location=locations[b, k].copy(), rotation_y=float(rotation_y[b, k]), score=float(scores[b, k]))
            for k in keep[b].nonzero()[0]])
    return results


def to_original(boxes: torch.Tensor, affine: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
    """(B, K, 4) input-pixel boxes -> original pixels through (B, 2, 3) affines, clipped to
    [0, W-1] x [0, H-1] of ``image_sizes`` (B, 2) (W, H). The extent of the four mapped corners
    is taken, so any affine (not only scale + shift) gives an axis-aligned box."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    corners = torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1),
                           torch.stack([x1, y2], -1), torch.stack([x2, y2], -1)], dim=-2)  # (B, K, 4, 2)
    mapped = corners @ affine[:, None, :, :2].transpose(-1, -2) + affine[:, None, None, :, 2]
    out = torch.cat([mapped.min(dim=-2).values, mapped.max(dim=-2).values], dim=-1)
    size = torch.as_tensor(image_sizes, dtype=out.dtype, device=out.device)
    upper = (size - 1).repeat(1, 2)[:, None, :]  # (B, 1, 4): W-1, H-1, W-1, H-1
    return torch.minimum(out.clamp(min=0), upper)
