"""ResNet-18/34/50/101 backbones returning C3, C4, C5 (strides 8, 16, 32); ``stages`` also
returns C2 (stride 4, CaDDN's image features).

The module names and state-dict keys are torchvision's (``conv1``, ``bn1``, ``layer1`` ..
``layer4``, each block ``conv1/bn1/conv2/bn2[/conv3/bn3]/downsample.0/downsample.1``), so a
torchvision ImageNet checkpoint saved to a file loads with :func:`load_pretrained` (torchvision
itself is never imported). The stem plus the first ``frozen_stages`` stages get no gradient.

``dilation`` ([layer2, layer3, layer4] flags, torchvision's ``replace_stride_with_dilation``)
trades a stage's stride for a dilation of its 3x3 convolutions: DeepLabV3 (CaDDN's depth
network) runs ResNet-101 with [False, True, True], output stride 8. Keys do not change.

Normalisation (``backbone.norm``): with ImageNet weights batch norm is frozen (DETR's recipe:
batch statistics of a few images per GPU are too noisy to train). A backbone trained from
scratch cannot use frozen statistics: they stay the identity, so the network is effectively
un-normalised and learns very slowly. ``norm: auto`` therefore means frozen with weights and
trainable ``nn.BatchNorm2d`` (same keys) without.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from monokd.errors import CheckpointMismatchError, ConfigError
from monokd.weights import read_weights


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, all buffers.

    Same keys as ``nn.BatchNorm2d`` (weight, bias, running_mean, running_var); a checkpoint's
    ``num_batches_tracked`` is dropped on load.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm=None, dilation: int = 1):
        super().__init__()
        norm = norm or FrozenBatchNorm2d
        self.conv1 = _conv3x3(cin, width, stride, dilation)
        self.bn1 = norm(width)
        self.conv2 = _conv3x3(width, width, 1, dilation)
        self.bn2 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm=None, dilation: int = 1):
        super().__init__()
        norm = norm or FrozenBatchNorm2d
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = norm(width)
        self.conv2 = _conv3x3(width, width, stride, dilation)
        self.bn2 = norm(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = norm(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


NORMS = {"frozen": FrozenBatchNorm2d, "batch": nn.BatchNorm2d}

ARCHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk.

    Args:
        depth: 18, 34, 50 or 101.
        frozen_stages: -1 trains everything, 0 freezes the stem (conv1, bn1), k >= 1 also
            freezes layer1 .. layerk.
        with_fc: keep the ImageNet classifier (only to hold checkpoint keys; never used).
        norm: "frozen" (FrozenBatchNorm2d, for pretrained weights) or "batch" (trainable
            nn.BatchNorm2d, for training from scratch).
        dilation: three flags (layer2, layer3, layer4): dilate instead of striding.
        widths: the four stages' base widths (the stem has the first); torchvision's
            (64, 128, 256, 512) by default, the only widths its pretrained weights fit. A
            narrower trunk trained from scratch costs ~(w / 64)^2 of the convolutions.
    Forward: images (B, 3, H, W) -> [C3 (B, c3, H/8, W/8), C4 (H/16), C5 (H/32)] (strides as
    in ``self.strides`` when dilated).
    """

    def __init__(self, depth: int = 50, frozen_stages: int = 1, with_fc: bool = False,
                 norm: str = "frozen", dilation=(False, False, False), widths=(64, 128, 256, 512)):
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"model.backbone.norm: {norm!r} is not one of {sorted(NORMS)} (or auto)")
        if depth not in ARCHS:
            raise ConfigError(f"model.backbone.depth: {depth} is not one of {sorted(ARCHS)}")
        if not -1 <= frozen_stages <= 4:
            raise ConfigError(f"model.backbone.frozen_stages: {frozen_stages} is not in [-1, 4]")
        widths = [int(w) for w in widths]
        if len(widths) != 4 or min(widths) < 1:
            raise ConfigError(f"model.backbone.widths: {widths} needs four positive widths (layer1 .. layer4)")
        block, counts = ARCHS[depth]
        self.depth = depth
        self.frozen_stages = frozen_stages
        self.norm = norm
        norm_layer = NORMS[norm]
        self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        dilation = [bool(d) for d in dilation]
        if len(dilation) != 3:
            raise ConfigError(f"model.backbone.dilation: {dilation} needs three flags (layer2, layer3, layer4)")
        cin, rate, total = widths[0], 1, 4
        self.strides = []
        for index, (count, width) in enumerate(zip(counts, widths)):
            stride = 1 if index == 0 else 2
            previous = rate
            if index and dilation[index - 1]:
                rate, stride = rate * stride, 1
            total *= stride
            self.strides.append(total)
            layer, cin = _make_layer(block, cin, width, count, stride, norm_layer, previous, rate)
            self.add_module(f"layer{index + 1}", layer)
        self.fc = nn.Linear(cin, 1000) if with_fc else None
        self.stage_channels = [w * block.expansion for w in widths]
        self.num_channels = self.stage_channels[1:]
        self.stage_strides = list(self.strides)  # C2 .. C5
        self.strides = self.strides[1:]
        self._freeze()

    def _frozen(self) -> list[nn.Module]:
        stages = [nn.ModuleList([self.conv1, self.bn1])] + [getattr(self, f"layer{i}") for i in range(1, 5)]
        return stages[: self.frozen_stages + 1]

    def _freeze(self) -> None:
        for stage in self._frozen():
            for param in stage.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNet":
        """A frozen stage also keeps its (trainable-kind) batch-norm statistics fixed."""
        super().train(mode)
        for stage in self._frozen():
            stage.eval()
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.stages(images)[1:]

    def stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images -> [C2, C3, C4, C5] (channels ``stage_channels``, strides ``stage_strides``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


def _make_layer(block, cin: int, width: int, count: int, stride: int, norm, first_dilation: int = 1,
                dilation: int = 1) -> tuple[nn.Sequential, int]:
    """torchvision's layer: the first block keeps the previous dilation, the others get the new one."""
    cout = width * block.expansion
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(_conv1x1(cin, cout, stride), norm(cout))
    blocks = [block(cin, width, stride, downsample, norm, first_dilation)]
    blocks += [block(cout, width, norm=norm, dilation=dilation) for _ in range(count - 1)]
    return nn.Sequential(*blocks), cout


def load_pretrained(model: ResNet, path: str | Path) -> None:
    """Load a torchvision-format ResNet state dict from ``path`` into ``model``.

    A torch file (.pth, .pt) or a .safetensors file; a missing, truncated or pickled-module file
    is one CheckpointMismatchError line (monokd.weights). Strict on the backbone's own keys; the
    classifier (``fc.*``) and BN ``num_batches_tracked`` are ignored. A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and a DataParallel
    ``module.`` prefix are accepted. Raises CheckpointMismatchError naming the missing,
    unexpected or mis-shaped keys.
    """
    state = read_weights(path, "backbone weights file (model.backbone.weights)")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{path}: expected a state dict, found {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()
             if not k.removeprefix("module.").startswith("fc.") and not k.endswith("num_batches_tracked")}
    own = {k: v for k, v in model.state_dict().items()
           if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or misshaped:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped))
                 if keys]
        raise CheckpointMismatchError(f"{path}: not a torchvision ResNet-{model.depth} state dict; " + "; ".join(parts))
    model.load_state_dict(state, strict=False)


def build_resnet(cfg: dict) -> ResNet:
    """``cfg`` = the ``model.backbone`` section: depth, weights (a file path or null),
    frozen_stages, norm (auto | frozen | batch; auto = frozen with weights, batch without),
    dilation (optional, three flags), widths (optional, four stage widths)."""
    norm = cfg.get("norm", "auto")
    if norm == "auto":
        norm = "frozen" if cfg.get("weights") else "batch"
    model = ResNet(int(cfg.get("depth", 50)), int(cfg.get("frozen_stages", 1)), norm=norm,
                   dilation=tuple(cfg.get("dilation") or (False, False, False)),
                   widths=tuple(cfg.get("widths") or (64, 128, 256, 512)))
    if cfg.get("weights"):
        load_pretrained(model, cfg["weights"])
    return model
