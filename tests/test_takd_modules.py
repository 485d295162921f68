"""MonoTAKD's student-side modules: SAM (cascade / parallel), FFM, the residual branch."""

from __future__ import annotations

import pytest
import torch

from monokd.models.takd.ffm import FFM
from monokd.models.takd.residual import ResidualBranch
from monokd.models.takd.sam import SAM, SqueezeExcitation


@pytest.mark.parametrize("mode", ["cascade", "parallel"])
def test_sam_keeps_shape_and_trains_its_offsets(mode):
    torch.manual_seed(0)
    sam = SAM(8, mode=mode, dilations=(2, 3))
    x = torch.randn(2, 8, 12, 10)
    out = sam(x)
    assert out.shape == x.shape
    assert (out < 0).any()  # linear last layer: a signed residual can be predicted
    out.square().mean().backward()
    assert sam.deform.offset_conv.weight.grad.abs().sum() > 0
    assert sam.se.fc[2].bias.grad.abs().sum() > 0  # the channel attention is on the path


def test_sam_modes_differ_and_reject_unknown():
    torch.manual_seed(0)
    cascade = SAM(8, mode="cascade", dilations=(2, 3)).eval()
    parallel = SAM(8, mode="parallel", dilations=(2, 3)).eval()
    parallel.load_state_dict(cascade.state_dict())  # same weights, different wiring
    x = torch.randn(1, 8, 9, 9)
    assert not torch.allclose(cascade(x), parallel(x))
    with pytest.raises(ValueError, match="mode"):
        SAM(8, mode="serial")


def test_squeeze_excitation_scales_channels_only():
    se = SqueezeExcitation(4, reduction=2)
    x = torch.rand(1, 4, 5, 5) + 0.1
    ratio = se(x) / x
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio))  # one weight per channel
    assert ((ratio > 0) & (ratio < 1)).all()


def test_ffm_and_residual_branch_shapes_and_gradients():
    torch.manual_seed(0)
    branch = ResidualBranch(24, 8, {"mode": "cascade", "dilations": (1, 2)})
    plain = ResidualBranch(24, 8, None)
    ffm = FFM(8)
    voxels = torch.randn(2, 24, 6, 7, requires_grad=True)
    bev = torch.randn(2, 8, 6, 7, requires_grad=True)
    residual = branch(voxels)
    assert residual.shape == plain(voxels).shape == (2, 8, 6, 7)
    fused = ffm(bev, residual)
    assert fused.shape == bev.shape
    fused.sum().backward()
    assert bev.grad.abs().sum() > 0 and voxels.grad.abs().sum() > 0
