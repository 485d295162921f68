"""MonoTAKD's released-code variants next to the paper's: IMD without gradient, the released
CMRD target, the logit class term summed over the batch."""

from __future__ import annotations

import pytest
import torch

from monokd.distill.takd.cmrd import residual_target
from monokd.distill.takd.features import batch_minmax
from monokd.distill.takd.imd import imd_loss
from monokd.distill.takd.logit import logit_losses
from monokd.models.ops.deform_conv import DeformConv2d
from monokd.models.takd.sam import SAM
from monokd.models.takd.scnet import SCBottleneck, SCNet


def _pair(a, b):
    return torch.tensor(a, dtype=torch.float32).view(1, 1, 1, 2), torch.tensor(b, dtype=torch.float32).view(1, 1, 1, 2)


def test_batch_minmax_spans_the_whole_batch():
    x = torch.cat(_pair([0.0, 4.0], [2.0, 8.0]))
    assert batch_minmax(x).flatten().tolist() == [0.0, 0.5, 0.25, 1.0]


def test_released_imd_value_by_hand_and_zero_gradient():
    student = torch.cat(_pair([0.0, 4.0], [2.0, 8.0])).requires_grad_(True)
    ta = torch.cat(_pair([1.0, 3.0], [5.0, 9.0]))
    # batch min-max: student [0, .5, .25, 1], TA [0, .25, .5, 1]: squared differences 0, 1/16, 1/16, 0
    loss = imd_loss(student, ta, variant="released")
    assert loss.item() == pytest.approx(1 / 32)
    loss.backward()
    assert student.grad is not None and torch.count_nonzero(student.grad) == 0


def test_paper_imd_carries_the_gradient():
    student = torch.cat(_pair([0.0, 4.0], [2.0, 8.0])).requires_grad_(True)
    ta = torch.cat(_pair([1.0, 3.0], [5.0, 9.0]))
    imd_loss(student, ta, variant="paper").backward()
    assert torch.count_nonzero(student.grad) == 4


def test_imd_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        imd_loss(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), variant="cmkd")


def test_released_cmrd_target_on_a_hand_made_pair():
    teacher = torch.cat(_pair([0.0, 3.0], [1.0, 0.2]))
    ta = torch.cat(_pair([2.0, 4.0], [0.0, 6.0]))
    # TA min-max over the batch (0..6): [1/3, 2/3], [0, 1]; the teacher stays raw:
    # D = |TA' - T| = [1/3, 7/3], [1, 0.8]; kept where D >= 0.6 * 7/3 = 1.4 (the batch maximum)
    target = residual_target(teacher, ta, residual="released", threshold=0.6)
    assert torch.allclose(target.flatten(), torch.tensor([0.0, 7 / 3, 0.0, 0.0]))
    # abs_threshold: nothing normalised, |TA - T| = [2, 1], [1, 5.8], each sample against its own maximum
    per_sample = residual_target(teacher, ta, residual="abs_threshold", threshold=0.6)
    assert torch.allclose(per_sample.flatten(), torch.tensor([2.0, 0.0, 0.0, 5.8]))
    # the signed paper target
    assert torch.allclose(residual_target(teacher, ta).flatten(), torch.tensor([-2.0, -1.0, 1.0, -5.8]))


def test_released_logit_class_term_is_summed_over_the_batch():
    torch.manual_seed(0)
    anchors, classes = 2, 3

    def head():
        return {"pred_cls": torch.randn(2, 2, 2, anchors * classes), "pred_boxes": torch.randn(2, 2, 2, anchors * 7),
                "pred_dir": torch.randn(2, 2, 2, anchors * 2)}

    student, teacher = head(), head()
    mean = logit_losses(student, teacher, classes)
    summed = logit_losses(student, teacher, classes, cls_batch_mean=False)
    assert summed["cls"].item() == pytest.approx(2 * mean["cls"].item())
    assert summed["box"].item() == pytest.approx(mean["box"].item())
    assert summed["dir"].item() == pytest.approx(mean["dir"].item())


def _released_sam_by_hand(channels: int = 2) -> SAM:
    """Released SAM whose attention MLP outputs 0 (weights 1/2), whose one DCN doubles its input
    with zero offsets and whose refine passes the channels through its ReLUs."""
    sam = SAM(channels, mode="released", dilations=(1, 2)).eval()
    eye = torch.eye(channels)
    with torch.no_grad():
        sam.attention.fc[4].weight.zero_()
        sam.deform.offset_conv.weight.zero_()
        sam.deform.weight.zero_()
        sam.deform.weight[:, :, 1, 1] = 2 * eye
        sam.refine[0].weight.zero_()
        sam.refine[0].weight[:channels, :, 1, 1] = eye
        sam.refine[2].weight.zero_()
        sam.refine[2].weight[:, :channels, 1, 1] = eye
    return sam


def test_released_sam_attention_on_x_and_one_dcn_twice_by_hand():
    sam = _released_sam_by_hand()
    x = torch.arange(18, dtype=torch.float32).view(1, 2, 3, 3) - 9
    # x * sigmoid(0) + D(D(x)) = x / 2 + 2 * 2 x, then ReLU(conv) twice
    assert torch.allclose(sam(x), torch.relu(4.5 * x), atol=1e-5)
    deforms = [m for m in sam.modules() if isinstance(m, DeformConv2d)]
    assert len(deforms) == 1 and deforms[0].bias is None and deforms[0].offset_conv.bias is None
    assert not deforms[0].modulated


def test_released_sam_layers():
    torch.manual_seed(0)
    sam = SAM(8, mode="released")
    assert [tuple(m.weight.shape) for m in sam.attention.fc if isinstance(m, torch.nn.Linear)] == [(8, 8)] * 3
    assert all(m.bias is None for m in sam.attention.fc if isinstance(m, torch.nn.Linear))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in sam.refine)
    assert sam.deform.offset_conv.weight.abs().sum() > 0  # nn.Conv2d's initialisation, not zero
    x = torch.randn(1, 8, 6, 5)  # batch 1 in training mode (the released image-pool BatchNorm fails here)
    out = sam(x)
    assert out.shape == x.shape and (out >= 0).all()
    out.sum().backward()
    assert sam.attention.fc[0].weight.grad.abs().sum() > 0 and sam.deform.offset_conv.weight.grad.abs().sum() > 0


def test_scnet_released_widths_parameters_and_gradient():
    assert sum(p.numel() for p in SCNet(128, blocks=4).parameters()) == 726_016
    torch.manual_seed(0)
    net = SCNet(8, blocks=2)
    x = torch.randn(2, 8, 9, 7, requires_grad=True)  # 9 x 7 is not a multiple of the pooling
    out = net(x)
    assert out.shape == x.shape and (out >= 0).all()
    out.sum().backward()
    assert x.grad.abs().sum() > 0 and net.layers[0].calibrated.k2[0].weight.grad.abs().sum() > 0


def test_scnet_block_is_residual():
    block = SCBottleneck(4).eval()
    with torch.no_grad():
        block.expand[1].weight.zero_()  # the last BatchNorm scales the branch to zero: y = ReLU(x)
        block.expand[1].bias.zero_()
    x = torch.randn(1, 4, 5, 5)
    assert torch.allclose(block(x), torch.relu(x))


def test_kitti_recipe_trains_the_released_variants_and_synth_keeps_the_papers():
    from monokd.config import load_config
    from monokd.distill.takd.distiller import parse_options

    kitti, synth = load_config("configs/takd_kitti.yaml"), load_config("configs/takd_synth.yaml")
    released, paper = parse_options(kitti["distill"]), parse_options(synth["distill"])
    assert (released["imd"]["variant"], released["cmrd"]["residual"], released["cmrd"]["weight"],
            released["logit"]["cls_batch_mean"]) == ("released", "released", 0.2, False)
    assert (paper["imd"]["variant"], paper["cmrd"]["residual"], paper["cmrd"]["weight"],
            paper["logit"]["cls_batch_mean"]) == ("paper", "difference", 1.0, True)
    assert kitti["model"]["takd"]["sam"]["mode"] == "released" and kitti["model"]["takd"]["ffm"] is False
    assert synth["model"]["takd"]["sam"]["mode"] == "cascade" and synth["model"]["takd"]["ffm"] is True
    # the released student structure: its own TA branch, started from the trained TA run, on
    # DeepLabV3-ResNet-50 layer3 features; synth keeps the separate TA network and C2 features
    assert kitti["model"]["takd"]["ta"] == "branch" and "ta" not in kitti["distill"]
    assert kitti["model"]["init"]["ckpt"].endswith("runs/takd_ta_kitti/last.ckpt")
    assert (kitti["model"]["backbone"]["depth"], kitti["model"]["feature_layer"]) == (50, "layer3")
    assert synth["model"]["takd"].get("ta", "network") == "network" and synth["distill"]["ta"]["ckpt"]
    assert synth["model"].get("feature_layer", "layer1") == "layer1" and not synth["model"].get("init")
    teacher = load_config("configs/takd_lidar_kitti.yaml")
    # the teacher runs on the student's batch: both see the camera's field of view only
    assert teacher["data"]["fov_points_only"] and kitti["data"]["fov_points_only"]
    assert not load_config("configs/takd_lidar_synth.yaml")["data"].get("fov_points_only")


def test_student_scnet_sits_between_lifting_and_head_and_feeds_imd(synth_root):
    pytest.importorskip("monokd.models.bev.anchor_head")
    from monokd.config import load_config
    from monokd.data.dataset import KittiDataset, collate
    from monokd.models import build_detector
    from monokd.models.contract import signals_of

    small = ["model.backbone.depth=18", "model.image_channels=8", "model.depth_head.channels=8",
             "model.takd.ffm=false", "model.takd.scnet=true", f"data.root={synth_root}"]
    cfg = load_config("configs/takd_synth.yaml", small)
    torch.manual_seed(0)
    student = build_detector(cfg).eval()
    assert isinstance(student.scnet, SCNet) and len(student.scnet.layers) == 4
    batch = collate([KittiDataset(synth_root, "train", cfg)[0]])
    with torch.no_grad():
        lifted = student.bev_features(batch)["bev"]
        outputs = student(batch, signals={"bev"})
        assert torch.allclose(signals_of(outputs, "student").bev, student.scnet(lifted), atol=1e-6)
        head = student.camera.detect_from_bev(student.scnet(lifted), batch)
        assert torch.allclose(outputs["pred_cls"], head["pred_cls"], atol=1e-6)
