"""MonoTAKD's released student structure: the TA as a GT-depth branch of the student (shared
image features, the residual branch's SAM), the two-stage start (``model.init``), and the
COCO DeepLabV3-ResNet-50 trunk read at layer3, stride 8."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from monokd.config import load_config
from monokd.data.dataset import KittiDataset, collate
from monokd.distill import build_distiller
from monokd.errors import CheckpointMismatchError, ConfigError
from monokd.models import build_detector
from monokd.models.contract import SIGNALS
from monokd.models.initial import initial_state, load_initial
from monokd.models.takd.sam import SAM

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SMALL = ["model.backbone.depth=18", "model.image_channels=8", "model.depth_head.channels=8", "model.depth.num_bins=12",
         "model.bev_channels=8"]
BRANCH = ["model.takd.ta=branch", "distill.ta=null"]


def _cfg(name: str, root, extra=()) -> dict:
    small = ["model.bev_channels=8"] if "lidar" in name else SMALL
    return load_config(ROOT / f"configs/{name}.yaml", [f"data.root={root}", *small, *extra])


@pytest.fixture(scope="module")
def batch(synth_root):
    cfg = _cfg("takd_synth", synth_root)
    return collate([KittiDataset(synth_root, "train", cfg)[0]])


@pytest.fixture(scope="module")
def student(synth_root):
    torch.manual_seed(0)
    return build_detector(_cfg("takd_synth", synth_root, BRANCH))


def _shared(model) -> dict[str, torch.nn.Parameter]:
    return {"backbone": model.camera.backbone.conv1.weight, "reduce": model.camera.reduce[0].weight}


def test_ta_branch_shares_the_image_features_and_the_sam(student, batch):
    student.train()
    out = student(batch, signals={"bev", "residual", "ta_bev"})
    ta_bev = out[SIGNALS].ta_bev
    assert ta_bev.shape == out[SIGNALS].bev.shape
    ta_loss, student_loss = ta_bev.square().mean(), out["pred_cls"].square().mean()
    shared = _shared(student)
    sam = list(student.residual.align.parameters())
    from_ta = torch.autograd.grad(ta_loss, [*shared.values(), *sam], retain_graph=True, allow_unused=True)
    from_student = torch.autograd.grad(student_loss, list(shared.values()), retain_graph=True)
    for name, g_ta, g_s in zip(shared, from_ta, from_student):  # each loss alone reaches the shared weights
        assert g_ta is not None and g_ta.abs().sum() > 0, name
        assert g_s.abs().sum() > 0, name
    assert all(g is not None for g in from_ta[len(shared):])  # the TA goes through the residual's SAM
    assert any(g.abs().sum() > 0 for g in from_ta[len(shared):])
    # the TA lifts with GT depth: the predicted depth and the student's collapse are not on its path
    unused = torch.autograd.grad(ta_loss, [student.camera.depth_head.classifier.weight,
                                           student.camera.collapse.block[0].weight], allow_unused=True)
    assert all(g is None for g in unused)
    sams = [m for _, m in student.named_modules(remove_duplicate=False) if isinstance(m, SAM)]
    assert len(sams) == 1


def test_ta_branch_is_the_gt_depth_ta_on_the_students_features(synth_root, student, batch):
    """F_TA = SAM(the gt_pixel TA's BEV feature) when that TA has the student's trunk and the
    branch's collapse: the branch lifts exactly as a separate TA network would."""
    ta = build_detector(_cfg("takd_ta_synth", synth_root))
    own = {k: v.clone() for k, v in student.state_dict().items()}
    state = {k: own["camera." + k] for k in ta.state_dict() if not k.startswith("collapse.")}
    state.update({k: own["ta_collapse." + k[len("collapse."):]] for k in ta.state_dict() if k.startswith("collapse.")})
    ta.load_state_dict(state)
    student.eval(), ta.eval()
    with torch.no_grad():
        ours = student(batch, signals={"ta_bev"})[SIGNALS].ta_bev
        theirs = student.residual.align(ta.bev_features(batch)["bev"])
    assert torch.equal(ours, theirs)
    with torch.no_grad():  # the SAM is on its path: changing it changes F_TA
        for param in student.residual.align.parameters():
            param.add_(0.5)
        assert not torch.equal(student(batch, signals={"ta_bev"})[SIGNALS].ta_bev, ours)
    student.load_state_dict(own)


def test_ta_branch_runs_only_when_asked_and_synth_default_unchanged(synth_root, student, batch):
    student.eval()
    assert SIGNALS not in student(batch)
    default = _cfg("takd_synth", synth_root)
    torch.manual_seed(0)
    plain = build_detector(default)
    assert not plain.ta_branch and plain.ta_collapse is None
    extra = {k for k in student.state_dict() if k not in plain.state_dict()}
    assert extra and all(k.startswith("ta_collapse.") for k in extra)
    # the ablation rows without a residual branch (no SAM): F_TA is the branch's collapse alone
    bare = build_detector(_cfg("takd_synth", synth_root, BRANCH + ["model.takd.residual=false",
                                                                   "model.takd.ffm=false"])).eval()
    with torch.no_grad():
        features = bare.camera.bev_features(batch)["image_features"]
        voxels = bare.camera.lift_gt_depth(batch, features, "test")
        assert torch.equal(bare(batch, signals={"ta_bev"})[SIGNALS].ta_bev, bare.ta_collapse(voxels))


def test_distiller_takes_f_ta_from_the_students_forward(synth_root, student, batch):
    cfg = _cfg("takd_synth", synth_root, BRANCH)
    teacher = build_detector(_cfg("takd_lidar_synth", synth_root)).eval()
    distiller = build_distiller(cfg, student, teacher).train()
    assert distiller.ta is None and "ta_bev" in distiller.student_signals
    terms = distiller.losses(distiller(batch), batch)
    assert {"distill_imd", "distill_cmrd"} <= set(terms) and all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()  # F_TA is a target: nothing reaches the TA branch's collapse
    assert all(p.grad is None for p in student.ta_collapse.parameters())
    student.zero_grad(set_to_none=True)
    ta = build_detector(_cfg("takd_ta_synth", synth_root))
    with pytest.raises(ConfigError, match="model.takd.ta: branch"):
        build_distiller(cfg, student, teacher, ta=ta)


# --- the two-stage start ------------------------------------------------------------------------

def _ta_checkpoint(synth_root, path: Path) -> dict:
    """A trained-TA stand-in saved as monokd's Lightning checkpoint (``state_dict``, ``model.``)."""
    torch.manual_seed(5)
    ta = build_detector(_cfg("takd_ta_synth", synth_root))
    state = {k: v.clone().uniform_() if v.is_floating_point() else v for k, v in ta.state_dict().items()}
    torch.save({"state_dict": {"model." + k: v for k, v in state.items()}, "epoch": 3}, path)
    return state


def test_init_loads_a_ta_checkpoint_into_the_student(synth_root, student, tmp_path):
    state = _ta_checkpoint(synth_root, tmp_path / "ta.ckpt")
    section = {"ckpt": str(tmp_path / "ta.ckpt"), "map": [["", "camera."], ["collapse.", "ta_collapse."]],
               "keep": ["residual.", "ffm."]}
    before = {k: v.clone() for k, v in student.state_dict().items()}
    record = load_initial(student, section)
    after = student.state_dict()
    assert torch.equal(after["camera.backbone.conv1.weight"], state["backbone.conv1.weight"])
    assert torch.equal(after["ta_collapse.block.0.weight"], state["collapse.block.0.weight"])
    assert torch.equal(after["camera.collapse.block.0.weight"], state["collapse.block.0.weight"])
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("residual."))
    assert record["loaded"] == len(state) + sum(k.startswith("collapse.") for k in state)
    assert "\n" not in record["line"] and "left at initialisation (ffm., residual.)" in record["line"]
    student.load_state_dict(before)


@pytest.mark.parametrize("change, message", [
    ({"keep": ["ffm."]}, r"missing keys \(residual\."),                    # a part not declared as kept
    ({"map": [["", "camera."], ["collapse.", "ta_collapse."], ["backbone.", "extra."]]},
     r"100 unexpected keys \(extra\.bn1\.bias"),                            # a key the model lacks
    ({"map": [["depth_head.", "camera.depth_head."], ["collapse.", "ta_collapse."]]},
     r"no map rule"),                                                     # a key no rule renames
])
def test_init_is_strict_in_one_line(synth_root, student, tmp_path, change, message):
    _ta_checkpoint(synth_root, tmp_path / "ta.ckpt")
    section = {"ckpt": str(tmp_path / "ta.ckpt"), "map": [["", "camera."], ["collapse.", "ta_collapse."]],
               "keep": ["residual.", "ffm."], **change}
    with pytest.raises(CheckpointMismatchError, match=message) as err:
        initial_state(student, section)
    assert "\n" not in str(err.value)


def test_init_refuses_a_mis_shaped_tensor(synth_root, student, tmp_path):
    state = _ta_checkpoint(synth_root, tmp_path / "ta.ckpt")
    state["reduce.0.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(state, tmp_path / "plain.pth")  # a plain state dict reads too
    section = {"ckpt": str(tmp_path / "plain.pth"), "map": [["", "camera."], ["collapse.", "ta_collapse."]],
               "keep": ["residual.", "ffm."]}
    with pytest.raises(CheckpointMismatchError, match=r"1 shape mismatches \(camera.reduce.0.weight \(3, 3, 1, 1\)"):
        initial_state(student, section)


# --- COCO DeepLabV3-ResNet-50, layer3 at stride 8 -------------------------------------------------

def _layout(name: str) -> dict[str, list[int]]:
    return json.loads((DATA / name).read_text())


def test_resnet50_layout_is_torchvisions():
    """The ResNet-50 layout (tests/data: the recorded ResNet-101 one with layer3 cut to 6 blocks, as
    torchvision's deeplabv3_resnet50 builds it, aux_loss on as for the COCO weights): its parameter
    count is the one torchvision publishes for deeplabv3_resnet50_coco-cd0a2569.pth."""
    layout = _layout("torchvision_deeplabv3_resnet50_coco.json")
    params = sum(math.prod(s) for k, s in layout.items() if not re.search(r"running_|num_batches", k))
    assert params == 42_004_074
    assert layout["backbone.layer3.0.conv1.weight"] == [256, 512, 1, 1] and "backbone.layer3.6.conv1.weight" not in layout
    assert layout["aux_classifier.0.weight"] == [256, 1024, 3, 3]


def test_kitti_student_reads_deeplabv3_resnet50_layer3_at_stride_8():
    from monokd.models.caddn.weights import deeplabv3_state, is_deeplabv3

    cfg = load_config(ROOT / "configs/takd_kitti.yaml")
    with torch.device("meta"):
        student = build_detector(cfg)
    camera = student.camera
    assert camera.feature_stride == 8 and camera.reduce[0].in_channels == 1024
    state = {k: torch.empty(s, device="meta") for k, s in _layout("torchvision_deeplabv3_resnet50_coco.json").items()}
    assert is_deeplabv3(state)
    converted = deeplabv3_state(camera, state, "coco.pth")
    own = {k for k in camera.state_dict() if k.startswith(("backbone.", "depth_head."))}
    assert set(converted) == own - {"depth_head.classifier.weight", "depth_head.classifier.bias"}
    del state["backbone.layer3.5.bn3.running_var"]
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(backbone.layer3.5.bn3.running_var\)"):
        deeplabv3_state(camera, state, "coco.pth")


def test_layer3_features_are_at_stride_8(synth_root, batch):
    cfg = _cfg("takd_synth", synth_root, BRANCH + ["model.feature_layer=layer3", "model.backbone.dilation=[false,true,true]"])
    model = build_detector(cfg).train()
    assert model.camera.feature_stride == 8
    lifted = model.camera.bev_features(batch)
    height, width = batch["images"].shape[-2:]
    assert lifted["image_features"].shape[-2:] == (height // 8, width // 8)
    assert lifted["depth_logits"].shape[-2:] == (height // 8, width // 8)
    out = model(batch, signals={"ta_bev"})
    assert torch.isfinite(out[SIGNALS].ta_bev).all()
    assert torch.isfinite(model.losses(out, batch)["loss_depth"])


def test_a_fresh_run_starts_from_model_init_and_records_it(synth_root, student, tmp_path):
    from types import SimpleNamespace

    from monokd.training.fit import _start_from

    state = _ta_checkpoint(synth_root, tmp_path / "ta.ckpt")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    cfg = {"model": {"name": "takd_student", "init": {"ckpt": str(tmp_path / "ta.ckpt"), "keep": ["residual.", "ffm."],
                              "map": [["", "camera."], ["collapse.", "ta_collapse."]]}}}
    provenance = {"notes": []}
    with pytest.warns(Warning, match="model.init: "):
        _start_from(SimpleNamespace(model=SimpleNamespace(student=student)), cfg, provenance)
    assert provenance["init"]["ckpt"] == str(tmp_path / "ta.ckpt") and provenance["init"]["kept"] > 0
    assert provenance["notes"][0].startswith("model.init: ")
    assert torch.equal(student.state_dict()["camera.reduce.0.weight"], state["reduce.0.weight"])
    _start_from(SimpleNamespace(model=student), {"model": {"name": "takd_student"}}, provenance)  # no model.init
    assert len(provenance["notes"]) == 1
    student.load_state_dict(before)
