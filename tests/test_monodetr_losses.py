import math

import pytest
import torch

from monokd.errors import ConfigError
from monokd.geometry.depth import depth_to_lid_bin
from monokd.models.monodetr.box_coding import (angle_to_bin, bin_to_angle, cxcylrtb_to_xyxy, decode_heading,
                                              encode_boxes, generalized_box_iou)
from monokd.models.monodetr.losses import (DEFAULT_WEIGHTS, SetCriterion, build_criterion, depth_map_targets,
                                          dim_aware_l1_loss, heading_loss, laplacian_depth_loss,
                                          sigmoid_focal_loss, softmax_focal_loss)

H, W = 64, 128  # a tiny network input; the depth logits are at stride 16: 4 x 8
BINS = {"num_bins": 80, "min": 1e-3, "max": 60.0}


# ---------------------------------------------------------------------------- box coding


def test_box_encoding_round_trip():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 128.0, 64.0]])
    centres = torch.tensor([[30.0, 35.0], [100.0, 10.0]])
    encoded = encode_boxes(boxes, centres, (W, H))
    assert encoded[0].tolist() == pytest.approx([30 / W, 35 / H, 20 / W, 20 / W, 15 / H, 25 / H])
    decoded = cxcylrtb_to_xyxy(encoded) * torch.tensor([W, H, W, H])
    assert torch.allclose(decoded, boxes, atol=1e-5)


def test_heading_bins_round_trip_many_angles():
    alpha = torch.cat([torch.linspace(-math.pi, math.pi, 1001, dtype=torch.float64),
                       torch.tensor([math.pi, -math.pi, 0.0, math.pi / 12, -math.pi / 12, 7.0, -7.0],
                                    dtype=torch.float64)])
    bins, residual = angle_to_bin(alpha)
    assert bins.min() >= 0 and bins.max() <= 11
    assert (residual >= -math.pi / 12 - 1e-12).all() and (residual < math.pi / 12 + 1e-12).all()
    back = bin_to_angle(bins, residual)
    assert (back >= -math.pi).all() and (back < math.pi).all()
    diff = torch.remainder(back - alpha + math.pi, 2 * math.pi) - math.pi  # equal mod 2 pi
    assert diff.abs().max() < 1e-9
    # MonoDETR's convention: bin i is centred at i * 2pi/12, so pi is bin 6 and -pi/2 bin 9.
    assert angle_to_bin(torch.tensor([0.0, math.pi, -math.pi / 2]))[0].tolist() == [0, 6, 9]


def test_decode_heading_uses_the_argmax_bin_residual():
    pred = torch.zeros(24)
    pred[3] = 5.0
    pred[12 + 3] = 0.1
    pred[12 + 4] = 0.4  # another bin's residual must be ignored
    assert decode_heading(pred).item() == pytest.approx(3 * math.pi / 6 + 0.1)


# ---------------------------------------------------------------------------- GIoU


def test_giou_known_values():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert generalized_box_iou(a, a).item() == pytest.approx(1.0)
    # Half-overlapping: inter 2, union 6, enclosing 6 -> 1/3.
    assert generalized_box_iou(a, torch.tensor([1.0, 0.0, 3.0, 2.0])).item() == pytest.approx(1 / 3)
    # Disjoint with a gap: union 8, enclosing 2 x 6 = 12 -> -1/3.
    assert generalized_box_iou(a, torch.tensor([4.0, 0.0, 6.0, 2.0])).item() == pytest.approx(-1 / 3)
    pairwise = generalized_box_iou(a[None, None], torch.stack([a, a + 10])[None])
    assert pairwise.shape == (1, 2)


@pytest.mark.parametrize("degenerate", [[1.0, 1.0, 1.0, 1.0],   # a point
                                        [1.0, 0.0, 1.0, 2.0],   # zero width
                                        [3.0, 3.0, 1.0, 1.0],   # inverted
                                        [0.0, 0.0, 2.0, 2.0]])  # identical (control)
def test_giou_degenerate_boxes_finite_with_gradients(degenerate):
    a = torch.tensor(degenerate, requires_grad=True)
    for other in (torch.tensor([0.0, 0.0, 2.0, 2.0]), torch.tensor(degenerate)):
        value = generalized_box_iou(a, other)
        (grad,) = torch.autograd.grad(value, a)
        assert torch.isfinite(value) and -1 - 1e-6 <= value.item() <= 1 + 1e-6
        assert torch.isfinite(grad).all()


# ---------------------------------------------------------------------------- elementwise losses


def test_sigmoid_focal_loss_hand_computed():
    x = torch.tensor([0.3])
    p = 1 / (1 + math.exp(-0.3))
    pos = sigmoid_focal_loss(x, torch.tensor([1.0])).item()
    neg = sigmoid_focal_loss(x, torch.tensor([0.0])).item()
    assert pos == pytest.approx(0.25 * (1 - p) ** 2 * -math.log(p), rel=1e-6)
    assert neg == pytest.approx(0.75 * p ** 2 * -math.log(1 - p), rel=1e-6)


def test_softmax_focal_loss_hand_computed():
    logits = torch.tensor([[1.0, 2.0, 0.5]]).reshape(1, 3, 1, 1)
    target = torch.tensor([[[0]]])
    p = math.exp(1) / (math.exp(1) + math.exp(2) + math.exp(0.5))
    assert softmax_focal_loss(logits, target).item() == pytest.approx(-0.25 * (1 - p) ** 2 * math.log(p), rel=1e-6)


def test_laplacian_depth_loss_hand_computed():
    value = laplacian_depth_loss(torch.tensor(10.0), torch.tensor(0.5), torch.tensor(12.0))
    assert value.item() == pytest.approx(math.sqrt(2) * math.exp(-0.5) * 2 + 0.5, rel=1e-6)


def test_dim_aware_l1_hand_computed():
    pred = torch.tensor([[2.0, 2.0, 4.0]], requires_grad=True)
    target = torch.tensor([[1.0, 2.0, 5.0]])
    # |d| = 1 0 1; relative 1 0 0.2 (mean 0.4); L1 mean 2/3; scale 5/3.
    loss = dim_aware_l1_loss(pred, target)
    assert loss[0].tolist() == pytest.approx([5 / 3, 0.0, 1 / 3])
    loss.sum().backward()
    assert pred.grad[0].tolist() == pytest.approx([5 / 3, 0.0, -1 / 3])  # the scale is a constant
    assert dim_aware_l1_loss(target, target).sum().item() == 0.0  # a perfect guess is 0, not NaN


def test_heading_loss_hand_computed():
    pred = torch.zeros(1, 24)
    pred[0, 12 + 2] = 0.05
    loss = heading_loss(pred, torch.tensor([2]), torch.tensor([0.15]))
    assert loss.item() == pytest.approx(math.log(12) + 0.1, rel=1e-5)


# ---------------------------------------------------------------------------- depth-map target


@pytest.mark.parametrize("stride", [4, 8, 16])
def test_depth_map_target_at_several_strides(stride):
    map_size = (H // stride, W // stride)
    near = {"boxes_2d": torch.tensor([[17.0, 9.0, 47.0, 30.0], [40.0, 20.0, 90.0, 50.0]]),
            "depth": torch.tensor([12.0, 70.0])}  # the second is beyond the 60 m range
    empty = {"boxes_2d": torch.zeros(0, 4), "depth": torch.zeros(0)}
    bins, fg = depth_map_targets([near, empty], map_size, stride, BINS)
    assert bins.shape == (2, *map_size) and fg.shape == (2, *map_size) and bins.dtype == torch.long
    assert (bins[1] == 80).all() and not fg[1].any()
    expected_fg = torch.zeros(map_size, dtype=torch.bool)
    expected_bin = torch.full(map_size, 80)
    for (x1, y1, x2, y2), depth in [((40, 20, 90, 50), 70.0), ((17, 9, 47, 30), 12.0)]:  # far first
        rows = slice(math.floor(y1 / stride), math.ceil(y2 / stride))
        cols = slice(math.floor(x1 / stride), math.ceil(x2 / stride))
        expected_fg[rows, cols] = True
        expected_bin[rows, cols] = depth_to_lid_bin(torch.tensor(depth), 80, 1e-3, 60.0)
    assert torch.equal(fg[0], expected_fg)
    assert torch.equal(bins[0], expected_bin)
    assert (bins[0][fg[0]] < 80).any() and (bins[0][fg[0]] == 80).any()  # 70 m: fg yet background bin


# ---------------------------------------------------------------------------- the criterion


def _targets(n_per_image):
    targets = []
    for n in n_per_image:
        x1 = torch.linspace(5, 60, n) if n else torch.zeros(0)
        boxes = torch.stack([x1, x1 * 0 + 10, x1 + 30, x1 * 0 + 40], dim=-1) if n else torch.zeros(0, 4)
        targets.append({"labels": torch.arange(n) % 2, "boxes_2d": boxes,
                        "centers_3d_proj": (boxes[:, :2] + boxes[:, 2:]) / 2 + 1.0,
                        "depth": torch.linspace(8, 40, n), "dims": torch.tensor([1.5, 1.6, 3.9]).repeat(n, 1),
                        "alpha": torch.linspace(-3.1, 3.1, n)})
    return targets


def _outputs(batch, queries=5, classes=2, aux_layers=2, bins=80):
    def layer():
        return {"pred_logits": torch.randn(batch, queries, classes, requires_grad=True),
                "pred_boxes": torch.rand(batch, queries, 6).mul(0.3).requires_grad_(),
                "pred_dims": torch.rand(batch, queries, 3).add(1).requires_grad_(),
                "pred_angle": torch.randn(batch, queries, 24, requires_grad=True),
                "pred_depth": torch.rand(batch, queries, 2).mul(20).requires_grad_()}
    out = layer()
    out["pred_depth_map_logits"] = torch.randn(batch, bins + 1, H // 16, W // 16, requires_grad=True)
    out["aux_outputs"] = [layer() for _ in range(aux_layers)]
    return out


def _leaves(outputs):
    leaves = [v for k, v in outputs.items() if k != "aux_outputs"]
    return leaves + [v for aux in outputs["aux_outputs"] for v in aux.values()]


def test_criterion_terms_keys_and_gradients_reach_all_inputs():
    torch.manual_seed(0)
    batch = {"images": torch.zeros(2, 3, H, W), "targets": _targets([3, 1])}
    outputs = _outputs(2)
    losses = SetCriterion(num_classes=2, depth_bins=BINS)(outputs, batch)
    names = ["class", "bbox", "giou", "center", "dim", "angle", "depth"]
    expected = {f"loss_{n}{s}" for n in names for s in ("", "_aux0", "_aux1")} | {"loss_depth_map", "loss"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    total = sum(v for k, v in losses.items() if k != "loss")
    assert losses["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    losses["loss"].backward()
    for tensor in _leaves(outputs):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_criterion_with_zero_targets_is_finite():
    torch.manual_seed(1)
    batch = {"images": torch.zeros(2, 3, H, W), "targets": _targets([0, 0])}
    outputs = _outputs(2)
    losses = SetCriterion(num_classes=2, depth_bins=BINS)(outputs, batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_depth"].item() == 0.0
    losses["loss"].backward()
    assert outputs["pred_logits"].grad.abs().sum() > 0
    assert outputs["pred_depth_map_logits"].grad.abs().sum() > 0
    assert all(t.grad is None or torch.isfinite(t.grad).all() for t in _leaves(outputs))


def test_criterion_perfect_prediction_has_zero_regression_terms():
    targets = _targets([2])
    t = targets[0]
    bins, residual = angle_to_bin(t["alpha"])
    angle = torch.zeros(1, 3, 24)
    angle[0, torch.arange(2), bins] = 30.0
    angle[0, torch.arange(2), 12 + bins] = residual
    logits = torch.full((1, 3, 2), -30.0)
    logits[0, torch.arange(2), t["labels"]] = 30.0
    boxes = torch.full((1, 3, 6), 0.2)
    boxes[0, :2] = encode_boxes(t["boxes_2d"], t["centers_3d_proj"], (W, H))
    outputs = {"pred_logits": logits, "pred_boxes": boxes,
               "pred_dims": torch.cat([t["dims"], torch.ones(1, 3)])[None],
               "pred_angle": angle, "pred_depth": torch.stack([torch.cat([t["depth"], torch.ones(1)]),
                                                               torch.zeros(3)], dim=-1)[None]}
    losses = SetCriterion(num_classes=2, aux=False)(outputs, {"images": torch.zeros(1, 3, H, W), "targets": targets})
    for name in ("loss_bbox", "loss_center", "loss_giou", "loss_dim", "loss_angle", "loss_depth", "loss_class"):
        assert losses[name].item() == pytest.approx(0.0, abs=1e-5), name


def test_criterion_weights_and_normalisation():
    torch.manual_seed(2)
    batch = {"images": torch.zeros(2, 3, H, W), "targets": _targets([2, 2])}
    outputs = _outputs(2, aux_layers=0)
    base = SetCriterion(num_classes=2, depth_bins=BINS)(outputs, batch)
    doubled = SetCriterion({"giou": 4.0, "depth_map": 0.0}, num_classes=2, depth_bins=BINS)(outputs, batch)
    assert doubled["loss_giou"].item() == pytest.approx(2 * base["loss_giou"].item(), rel=1e-6)
    assert doubled["loss_depth_map"].item() == 0.0
    # Laplacian term: sum over the 4 matched pairs / 4 objects.
    indices = SetCriterion(num_classes=2).matcher(outputs, batch["targets"], (W, H))
    by_hand = sum(laplacian_depth_loss(outputs["pred_depth"][b, q, 0], outputs["pred_depth"][b, q, 1],
                                       batch["targets"][b]["depth"][j])
                  for b, (qs, js) in enumerate(indices) for q, j in zip(qs, js)) / 4
    assert base["loss_depth"].item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_depth_map_term_hand_computed_on_uniform_logits():
    targets = [{"boxes_2d": torch.tensor([[0.0, 0.0, 32.0, 16.0]]), "depth": torch.tensor([10.0])}]
    logits = torch.zeros(1, 81, 4, 8)  # p = 1/81 everywhere
    term = SetCriterion(depth_bins=BINS).depth_map_term(logits, targets, (W, H))
    per_pixel = -0.25 * (1 - 1 / 81) ** 2 * math.log(1 / 81)
    fg = 2 * 1  # a 32 x 16 box covers 2 x 1 cells at stride 16
    assert term.item() == pytest.approx(per_pixel * (13 * fg + (32 - fg)) / 32, rel=1e-5)


def test_num_boxes_all_reduced_when_distributed(tmp_path):
    import torch.distributed as dist

    from monokd.models.monodetr.losses import _num_boxes

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        assert _num_boxes(_targets([3, 2]), torch.device("cpu")) == 5.0
        assert _num_boxes(_targets([0, 0]), torch.device("cpu")) == 1.0  # clamped
    finally:
        dist.destroy_process_group()


def test_build_criterion_from_config():
    crit = build_criterion({"weights": {"center": 3.0}, "matcher": {"cost_center": 1.0}, "aux": False}, 3)
    assert crit.weights == {**DEFAULT_WEIGHTS, "center": 3.0} and not crit.aux
    assert crit.matcher.cost_center == 1.0
    with pytest.raises(ConfigError, match="centre"):
        build_criterion({"weights": {"centre": 3.0}}, 3)
    with pytest.raises(ConfigError, match="cost_centre"):
        build_criterion({"matcher": {"cost_centre": 3.0}}, 3)
