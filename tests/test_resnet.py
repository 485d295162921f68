"""ResNet backbones: torchvision key names, output strides, frozen parts, weight loading."""

from __future__ import annotations

import pytest
import torch

from monokd.errors import CheckpointMismatchError, ConfigError
from monokd.models.backbones.resnet import FrozenBatchNorm2d, ResNet, build_resnet, load_pretrained

# torchvision's resnet18().state_dict() has 122 keys: conv1 (1) + bn1 (5 with
# num_batches_tracked) + 8 BasicBlocks x 12 + 3 downsamples x 6 + fc (2).
# resnet50: 320 = 1 + 5 + 16 Bottlenecks x 18 + 4 downsamples x 6 + 2.
# resnet101: 626 = 1 + 5 + 33 Bottlenecks x 18 + 4 downsamples x 6 + 2.
TORCHVISION_KEY_COUNT = {18: 122, 34: 218, 50: 320, 101: 626}
BN_COUNT = {18: 20, 34: 36, 50: 53, 101: 104}

RESNET18_KEYS = [
    "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
    "layer1.0.conv1.weight", "layer1.0.bn1.running_var", "layer1.0.conv2.weight", "layer1.0.bn2.bias",
    "layer1.1.conv2.weight", "layer1.1.bn2.num_batches_tracked",
    "layer2.0.conv1.weight", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight",
    "layer2.0.downsample.1.running_mean", "layer2.1.bn1.weight",
    "layer3.0.downsample.0.weight", "layer3.1.conv2.weight",
    "layer4.0.downsample.1.bias", "layer4.1.bn2.running_var", "fc.weight", "fc.bias",
]
RESNET18_SHAPES = {"conv1.weight": (64, 3, 7, 7), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                   "layer4.1.conv2.weight": (512, 512, 3, 3), "fc.weight": (1000, 512)}
RESNET50_KEYS = [
    "conv1.weight", "bn1.num_batches_tracked", "layer1.0.conv3.weight", "layer1.0.bn3.weight",
    "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var", "layer1.2.conv3.weight",
    "layer2.3.bn3.bias", "layer3.5.conv2.weight", "layer3.0.downsample.0.weight",
    "layer4.2.bn3.running_mean", "layer4.0.downsample.1.num_batches_tracked", "fc.weight", "fc.bias",
]
RESNET50_SHAPES = {"layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv3.weight": (256, 64, 1, 1),
                   "layer3.0.downsample.0.weight": (1024, 512, 1, 1), "layer4.2.conv3.weight": (2048, 512, 1, 1),
                   "fc.weight": (1000, 2048)}


def torchvision_layout(depth: int) -> dict[str, torch.Tensor]:
    """A stand-in for torchvision's state dict: our keys plus the classifier and the BN counters."""
    state = dict(ResNet(depth, with_fc=True).state_dict())
    for key in [k for k in state if k.endswith("running_var")]:
        state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    return state


@pytest.mark.parametrize("depth,expected_keys,shapes", [(18, RESNET18_KEYS, RESNET18_SHAPES),
                                                        (50, RESNET50_KEYS, RESNET50_SHAPES)])
def test_state_dict_keys_are_torchvision(depth, expected_keys, shapes):
    state = torchvision_layout(depth)
    assert len(state) == TORCHVISION_KEY_COUNT[depth]
    for key in expected_keys:
        assert key in state, key
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    own = ResNet(depth).state_dict()
    # Frozen BN keeps no counter; the classifier is dropped by default.
    assert len(own) == TORCHVISION_KEY_COUNT[depth] - BN_COUNT[depth] - 2
    assert not any(k.startswith("fc.") or k.endswith("num_batches_tracked") for k in own)


def test_resnet34_key_count():
    assert len(torchvision_layout(34)) == TORCHVISION_KEY_COUNT[34]


def test_resnet101_keys_and_dilated_output_stride_8():
    state = torchvision_layout(101)
    assert len(state) == TORCHVISION_KEY_COUNT[101]
    assert tuple(state["layer3.22.conv3.weight"].shape) == (1024, 256, 1, 1) and "layer3.23.conv1.weight" not in state
    assert len(ResNet(101).state_dict()) == TORCHVISION_KEY_COUNT[101] - BN_COUNT[101] - 2
    # DeepLabV3's trunk: layer3 and layer4 dilated, same keys and shapes
    model = ResNet(18, dilation=(False, True, True)).eval()
    assert model.stage_strides == [4, 8, 8, 8] and model.layer4[1].conv1.dilation == (4, 4)
    assert model.layer3[0].conv1.dilation == (1, 1) and model.layer3[1].conv1.dilation == (2, 2)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in ResNet(18).state_dict().items()}
    with torch.no_grad():
        c2, c3, c4, c5 = model.stages(torch.randn(1, 3, 64, 96))
    assert c2.shape == (1, 64, 16, 24) and c5.shape == (1, 512, 8, 12)


@pytest.mark.parametrize("depth,channels", [(18, [128, 256, 512]), (50, [512, 1024, 2048])])
def test_outputs_c3_c4_c5(depth, channels):
    model = ResNet(depth).eval()
    assert model.num_channels == channels
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 128, 416))
    assert [tuple(f.shape) for f in feats] == [(1, channels[0], 16, 52), (1, channels[1], 8, 26),
                                               (1, channels[2], 4, 13)]


def test_frozen_stages():
    model = ResNet(18, frozen_stages=1)
    assert not model.conv1.weight.requires_grad
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert all(p.requires_grad for p in ResNet(18, frozen_stages=-1).parameters())
    assert not any(p.requires_grad for p in ResNet(18, frozen_stages=4).parameters())
    assert list(model.bn1.parameters()) == []  # frozen BN holds buffers only
    with pytest.raises(ConfigError):
        ResNet(152)


def test_frozen_batchnorm_matches_batchnorm_eval():
    bn = torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        for tensor in (bn.weight, bn.bias, bn.running_mean):
            tensor.copy_(torch.randn(4))
        bn.running_var.copy_(torch.rand(4) + 0.5)
    frozen = FrozenBatchNorm2d(4)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped
    x = torch.randn(2, 4, 3, 3)
    assert torch.allclose(frozen(x), bn(x), atol=1e-6)


def test_load_torchvision_file(tmp_path):
    state = {k: torch.randn_like(v.float()) if v.is_floating_point() else v
             for k, v in torchvision_layout(18).items()}
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = build_resnet({"depth": 18, "weights": str(path), "frozen_stages": 1})
    assert torch.equal(model.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(model.bn1.running_var, state["bn1.running_var"])

    del state["layer2.0.downsample.0.weight"]
    state["head.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"missing \(1\): layer2.0.downsample.0.weight.*"
                                                      r"unexpected \(1\): head.weight"):
        load_pretrained(ResNet(18), path)
    state = torchvision_layout(18)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"wrong shape \(1\): layer1.0.conv1.weight"):
        load_pretrained(ResNet(18), path)
    with pytest.raises(CheckpointMismatchError, match="not found"):
        load_pretrained(ResNet(18), tmp_path / "absent.pth")


def test_norm_auto_is_trainable_batch_norm_from_scratch_and_frozen_with_weights(tmp_path):
    """From scratch, frozen BN statistics would stay the identity (an un-normalised network);
    trainable BN keeps torchvision's keys."""
    import torch

    from monokd.models.backbones.resnet import FrozenBatchNorm2d, build_resnet

    scratch = build_resnet({"depth": 18, "weights": None, "frozen_stages": -1})
    assert scratch.norm == "batch"
    assert isinstance(scratch.layer1[0].bn1, torch.nn.BatchNorm2d)
    assert scratch.layer1[0].bn2.weight.requires_grad
    partly_frozen = build_resnet({"depth": 18, "weights": None, "frozen_stages": 1}).train()
    assert not partly_frozen.layer1.training and not partly_frozen.bn1.training  # stats fixed
    assert partly_frozen.layer2.training
    path = tmp_path / "r18.pth"
    torch.save(scratch.state_dict(), path)  # BN keys (incl. num_batches_tracked) load as torchvision's
    pretrained = build_resnet({"depth": 18, "weights": str(path), "frozen_stages": 1})
    assert pretrained.norm == "frozen"
    assert isinstance(pretrained.layer1[0].bn1, FrozenBatchNorm2d)
    assert torch.equal(pretrained.layer2[0].conv1.weight, scratch.layer2[0].conv1.weight)
    with pytest.raises(Exception, match="norm"):
        build_resnet({"depth": 18, "norm": "group"})


@pytest.mark.parametrize("depth,expansion", [(18, 1), (50, 4)])
def test_widths_narrow_every_stage_and_the_stem(depth, expansion):
    model = build_resnet({"depth": depth, "weights": None, "frozen_stages": -1, "widths": [16, 24, 40, 56]}).eval()
    assert model.conv1.out_channels == 16 and model.bn1.num_features == 16
    assert model.stage_channels == [16 * expansion, 24 * expansion, 40 * expansion, 56 * expansion]
    assert model.num_channels == model.stage_channels[1:]
    with torch.no_grad():
        c2, c3, c4, c5 = model.stages(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in (c2, c3, c4, c5)] == model.stage_channels
    assert c5.shape[-2:] == (2, 3)  # the strides do not depend on the widths
    # torchvision's widths are the default; conv FLOPs scale with width^2, so halving the
    # widths quarters the parameter count of the convolutions
    full = sum(p.numel() for p in ResNet(depth).parameters())
    half = sum(p.numel() for p in ResNet(depth, widths=(32, 64, 128, 256)).parameters())
    assert 0.24 < half / full < 0.26


def test_widths_are_checked_and_pretrained_weights_need_torchvision_widths(tmp_path):
    with pytest.raises(ConfigError, match=r"model.backbone.widths: \[32, 64, 128\] needs four"):
        ResNet(18, widths=(32, 64, 128))
    with pytest.raises(ConfigError, match="model.backbone.widths"):
        ResNet(18, widths=(32, 64, 0, 256))
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_layout(18), path)
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        build_resnet({"depth": 18, "weights": str(path), "widths": [32, 64, 128, 256]})
