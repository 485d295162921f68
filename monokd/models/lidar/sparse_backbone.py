"""SECOND's 3-D backbone on sparse convolutions (Yan et al., Sensors 2018; OpenPCDet's
``VoxelResBackBone8x`` and MonoTAKD's ``VoxelResBackBone8x_c64``) and the height compression
to a BEV map, on ``spconv`` (an optional extra: ``pip install 'monokd[spconv]'``).

    voxel features (V, C_in) at (b, k, j, i) of a (NZ + 1, NY_v, NX_v) sparse grid
      conv_input  SubM 3^3 C_in -> 16                                        stride 1
      conv1       2 residual blocks (SubM 3^3 + bias, BN, ReLU, SubM, BN, + x, ReLU)    16
      conv2       SpConv 3^3 stride 2 -> 32, 2 residual blocks                stride 2
      conv3       SpConv 3^3 stride 2 -> 64, 2 residual blocks                stride 4
      conv4       SpConv 3^3 stride 2 (no z padding) -> C_4, 2 residual blocks  stride 8
      conv_out    SpConv (3, 1, 1) stride (2, 1, 1) -> C_4                     D z-layers
    each conv without bias (but the blocks'), BatchNorm1d (eps 1e-3, momentum 0.01), ReLU;
    height compression: dense (B, C_4, D, NY_v / 8, NX_v / 8) -> (B, C_4 * D, NY, NX)
    (channel c * D + d, OpenPCDet's ``HeightCompression``)

C_4 = 128 is OpenPCDet's VoxelResBackBone8x, 64 MonoTAKD's ``_c64``. On KITTI's 4 m of height
at 0.1 m (41 z-layers): 21, 11, 5, then D = 2. The module and parameter names are OpenPCDet's
(``conv1.0.conv1.weight``, ...), so an OpenPCDet checkpoint's ``backbone_3d.*`` loads as it is.
spconv's forward runs on the CPU; its backward needs CUDA (spconv 2.3.8), so a SECOND teacher
trains on a GPU and runs frozen anywhere.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from monokd.errors import ConfigError

SPCONV = "spconv==2.3.8"
_EPS, _MOMENTUM = 1e-3, 0.01


def require_spconv(what: str):
    """``spconv.pytorch``, or one ConfigError line naming ``what`` and the fallback."""
    try:
        import spconv.pytorch as spconv
    except ImportError:
        raise ConfigError(f"{what} needs spconv (pip install 'monokd[spconv]', {SPCONV}), which is not installed; "
                          "the pillars teacher remains (model.name: lidar_pillars, configs/takd_lidar_kitti.yaml)"
                          ) from None
    return spconv


def _norm(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=_EPS, momentum=_MOMENTUM)


@functools.lru_cache(maxsize=None)
def _residual_block_class():
    """SECOND's residual block, a ``spconv.SparseModule`` (defined once spconv is imported)."""
    spconv = require_spconv("SECOND's sparse backbone")

    class BiasedSubMConv3d(spconv.SubMConv3d):
        """spconv's SubMConv3d whose bias is added after the convolution on the CPU (spconv's CPU
        kernel refuses a fused bias at inference); the same parameters, the same result."""

        def forward(self, x):
            if x.features.is_cuda or self.bias is None:
                return super().forward(x)
            out = self._conv_forward(self.training, x, self.weight, None, name=self.name,
                                     sparse_unique_name=self._sparse_unique_name)
            return out.replace_feature(out.features + self.bias)

    class SparseBasicBlock(spconv.SparseModule):
        """x -> ReLU(BN(SubM(ReLU(BN(SubM(x))))) + x) at constant channels; the convolutions
        carry a bias (OpenPCDet's)."""

        def __init__(self, channels: int, indice_key: str):
            super().__init__()
            self.conv1 = BiasedSubMConv3d(channels, channels, 3, padding=1, bias=True, indice_key=indice_key)
            self.bn1 = _norm(channels)
            self.relu = nn.ReLU()
            self.conv2 = BiasedSubMConv3d(channels, channels, 3, padding=1, bias=True, indice_key=indice_key)
            self.bn2 = _norm(channels)

        def forward(self, x):
            out = self.conv1(x)
            out = out.replace_feature(self.relu(self.bn1(out.features)))
            out = self.conv2(out)
            return out.replace_feature(self.relu(self.bn2(out.features) + x.features))

    return SparseBasicBlock


class VoxelResBackbone8x(nn.Module):
    """See the module docstring. Args: in_channels C_in; sparse_shape (NZ + 1, NY_v, NX_v);
    out_channels C_4 (64 or 128)."""

    def __init__(self, in_channels: int, sparse_shape, out_channels: int = 64):
        super().__init__()
        spconv = require_spconv("SECOND's sparse backbone")
        block = _residual_block_class()
        self.sparse_shape = [int(s) for s in sparse_shape]

        def down(cin: int, cout: int, key: str, padding=1):
            return spconv.SparseSequential(
                spconv.SparseConv3d(cin, cout, 3, stride=2, padding=padding, bias=False, indice_key=key),
                _norm(cout), nn.ReLU())

        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, 16, 3, padding=1, bias=False, indice_key="subm1"), _norm(16), nn.ReLU())
        self.conv1 = spconv.SparseSequential(block(16, "res1"), block(16, "res1"))
        self.conv2 = spconv.SparseSequential(down(16, 32, "spconv2"), block(32, "res2"), block(32, "res2"))
        self.conv3 = spconv.SparseSequential(down(32, 64, "spconv3"), block(64, "res3"), block(64, "res3"))
        self.conv4 = spconv.SparseSequential(down(64, out_channels, "spconv4", padding=(0, 1, 1)),
                                             block(out_channels, "res4"), block(out_channels, "res4"))
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv3d(out_channels, out_channels, (3, 1, 1), stride=(2, 1, 1), padding=0, bias=False,
                                indice_key="spconv_down2"), _norm(out_channels), nn.ReLU())
        self.out_channels = out_channels

    @staticmethod
    def depth_after(layers: int) -> int:
        """D, the z-layers left of ``layers`` = NZ + 1 input layers (the four z strides above)."""
        for kernel, stride, pad in ((3, 2, 1), (3, 2, 1), (3, 2, 0), (3, 2, 0)):
            layers = (layers + 2 * pad - kernel) // stride + 1
        return layers

    def forward(self, features: torch.Tensor, coords: torch.Tensor, batch_size: int) -> torch.Tensor:
        """(V, C_in) features at (V, 4) int32 (b, k, j, i) -> BEV (B, C_4 * D, NY_v / 8, NX_v / 8)."""
        spconv = require_spconv("SECOND's sparse backbone")
        if not len(features):  # no point in range (spconv refuses empty tensors): an empty scene
            _, ny, nx = self.sparse_shape
            channels = self.out_channels * self.depth_after(self.sparse_shape[0])
            return features.new_zeros(batch_size, channels, ny // 8, nx // 8)
        x = spconv.SparseConvTensor(features, coords.int(), self.sparse_shape, batch_size)
        with _one_thread_on_cpu(features):
            x = self.conv_out(self.conv4(self.conv3(self.conv2(self.conv1(self.conv_input(x))))))
        dense = x.dense()  # (B, C, D, H, W)
        batch, channels, depth, height, width = dense.shape
        return dense.reshape(batch, channels * depth, height, width)


@contextlib.contextmanager
def _one_thread_on_cpu(features: torch.Tensor):
    """torch's intra-op threads set to 1 for the block, on the CPU: spconv 2.3.8's CPU sparse
    convolution races with more (measured on a real KITTI sweep: 2 threads give a different
    result on each call, a few output rows of 15,417 wrong; 1 thread matches a by-hand
    submanifold convolution to 5e-7)."""
    if features.is_cuda:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_sparse_shape(grid_shape, bev_shape, out_channels: int, bev_channels: int, key: str) -> int:
    """D for a voxel grid of ``grid_shape`` (NX_v, NY_v, NZ) whose stride-8 output must be the
    BEV grid ``bev_shape`` (NY, NX) with ``bev_channels`` = C_4 * D; ConfigError otherwise."""
    nx, ny, nz = grid_shape
    if (ny, nx) != (bev_shape[0] * 8, bev_shape[1] * 8):
        raise ConfigError(f"{key}: {nx} x {ny} voxels at stride 8 are not the {bev_shape[1]} x {bev_shape[0]} BEV "
                          "grid (model.grid); the voxel size must be the BEV cell / 8 in x and y")
    depth = VoxelResBackbone8x.depth_after(nz + 1)
    if depth < 1 or out_channels * depth != bev_channels:
        raise ConfigError(f"{key}: {nz} z-layers compress to {depth} x {out_channels} = {out_channels * depth} "
                          f"channels, not model.bev_channels = {bev_channels}")
    return depth
