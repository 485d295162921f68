"""Hungarian matching of MonoDETR's queries to ground-truth objects (one-to-one, per image).

The cost of assigning query q to object n is

    2 * focal class cost + 10 * L1(projected 3-D centre) + 5 * L1(l, r, t, b) + 2 * (-GIoU)

with the boxes in MonoDETR's normalised (cx, cy, l, r, t, b) form. Queries left unassigned are
"no object". The cost is built on the outputs' device; only the assignment runs on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

from monokd.models.monodetr.box_coding import cxcylrtb_to_xyxy, encode_boxes, generalized_box_iou

# Stands in for NaN/inf costs (a diverged query) so that scipy can still solve the assignment.
_INVALID_COST = 1e8


@dataclass(eq=False)
class HungarianMatcher:
    """The weights of the cost terms (see the module docstring) and the focal cost's alpha, gamma."""

    cost_class: float = 2.0
    cost_center: float = 10.0
    cost_box: float = 5.0
    cost_giou: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: list[dict], input_size: tuple[float, float]
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match each image's queries to its objects.

        Args:
            outputs: ``pred_logits`` (B, Q, C) and ``pred_boxes`` (B, Q, 6).
            targets: B dicts with ``labels`` (N,), ``boxes_2d`` (N, 4) and ``centers_3d_proj``
                (N, 2) in input pixels.
            input_size: (W, H) of the network input.
        Returns:
            B pairs (query_idx, target_idx) of CPU LongTensors of length min(Q, N).
        """
        batch, queries = outputs["pred_logits"].shape[:2]
        cost = self.cost_matrix(outputs["pred_logits"].flatten(0, 1), outputs["pred_boxes"].flatten(0, 1),
                                targets, input_size)
        return assign(cost.reshape(batch, queries, cost.shape[-1]),
                      [len(t["labels"]) for t in targets])

    def cost_matrix(self, logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict],
                    input_size: tuple[float, float]) -> torch.Tensor:
        """(P, C) logits and (P, 6) boxes of P queries vs all the batch's objects -> (P, N_total)."""
        device = logits.device
        labels = torch.cat([t["labels"] for t in targets]).to(device=device, dtype=torch.long)
        tgt_boxes = torch.cat([encode_boxes(t["boxes_2d"], t["centers_3d_proj"], input_size)
                               for t in targets]).to(device=device, dtype=boxes.dtype)

        prob = logits.sigmoid()
        # DETR's focal matching cost: focal loss of "positive" minus that of "negative".
        eps = 1e-8
        neg = (1 - self.focal_alpha) * prob ** self.focal_gamma * -(1 - prob + eps).log()
        pos = self.focal_alpha * (1 - prob) ** self.focal_gamma * -(prob + eps).log()
        cost_class = pos[:, labels] - neg[:, labels]

        cost_center = torch.cdist(boxes[:, :2], tgt_boxes[:, :2], p=1)
        cost_box = torch.cdist(boxes[:, 2:], tgt_boxes[:, 2:], p=1)
        cost_giou = -generalized_box_iou(cxcylrtb_to_xyxy(boxes)[:, None], cxcylrtb_to_xyxy(tgt_boxes)[None])
        return (self.cost_class * cost_class + self.cost_center * cost_center
                + self.cost_box * cost_box + self.cost_giou * cost_giou)


def assign(cost: torch.Tensor, sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Optimal one-to-one assignment per image.

    Args:
        cost: (B, Q, sum(sizes)) cost of each query of each image vs every object of the batch.
        sizes: objects per image; image b owns columns sizes[:b].sum() .. + sizes[b].
    Returns:
        B pairs (query_idx, target_idx), CPU LongTensors, minimising the summed cost.
    """
    cost = torch.nan_to_num(cost.detach().float().cpu(), nan=_INVALID_COST,
                            posinf=_INVALID_COST, neginf=-_INVALID_COST)
    indices = []
    for b, per_image in enumerate(cost.split(sizes, dim=-1)):
        rows, cols = linear_sum_assignment(per_image[b].numpy())
        indices.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)))
    return indices
