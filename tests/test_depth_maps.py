"""`monokd depth-maps` on the real KITTI frames with a velodyne sweep (000000-000004)."""

from pathlib import Path

import numpy as np
import pytest

from monokd.cli import main
from monokd.data.depth_maps import complete_depth
from monokd.data.kitti import read_calib, read_depth, read_velodyne
from monokd.geometry.calib import lidar_to_rect

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_samples"
if not SAMPLES.is_dir():
    SAMPLES = Path("/work/shared/data/kitti_samples")
FRAMES = ["000000", "000001", "000002", "000003", "000004"]
pytestmark = pytest.mark.skipif(not (SAMPLES / "training" / "velodyne").is_dir(), reason="no KITTI samples")


def _nearest_returns(frame: str, shape: tuple[int, int]) -> np.ndarray:
    """Brute force: per pixel, the smallest rectified z of the returns landing in it (0 = none)."""
    calib = read_calib(SAMPLES / "training" / "calib" / f"{frame}.txt")
    rect = lidar_to_rect(read_velodyne(SAMPLES / "training" / "velodyne" / f"{frame}.bin")[:, :3], calib)
    rect = rect[rect[:, 2] > 0.1]
    uvw = np.c_[rect, np.ones(len(rect))] @ calib.P2.T
    u, v, z = np.floor(uvw[:, 0] / uvw[:, 2]).astype(int), np.floor(uvw[:, 1] / uvw[:, 2]).astype(int), rect[:, 2]
    inside = (u >= 0) & (u < shape[1]) & (v >= 0) & (v < shape[0])
    nearest = np.full(shape, np.inf)
    np.minimum.at(nearest, (v[inside], u[inside]), z[inside])
    return np.where(np.isfinite(nearest), nearest, 0.0)


@pytest.fixture(scope="module")
def kitti_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti")
    for kind in ("calib", "image_2", "velodyne"):
        (root / "training").mkdir(exist_ok=True)
        (root / "training" / kind).symlink_to(SAMPLES / "training" / kind)
    assert main(["depth-maps", "--root", str(root)]) == 0
    return root


def test_returns_kept_exactly_and_image_below_top_beam_covered(kitti_root):
    for frame in FRAMES:
        depth = read_depth(kitti_root / "training" / "depth_2" / f"{frame}.png")
        returns = _nearest_returns(frame, depth.shape)
        hit = returns > 0
        assert hit.sum() > 10000
        assert np.abs(depth[hit] - returns[hit]).max() <= 1 / 256  # nearest return wins, PNG precision
        columns = hit.any(axis=0)
        top = int(np.median(np.argmax(hit, axis=0)[columns]))  # the top beam's typical row
        assert (depth[top:] > 0).mean() > 0.9
        first = np.where(columns, np.argmax(hit, axis=0), depth.shape[0])
        for col in range(0, depth.shape[1], 7):  # nothing above the highest return within 7 columns
            assert not depth[: first[max(col - 7, 0): col + 8].min(), col].any()


def test_resumable_and_overwrite(kitti_root, capsys):
    target = kitti_root / "training" / "depth_2" / "000000.png"
    target.write_bytes(b"")  # an existing file, even a bad one, is skipped without --overwrite
    assert main(["depth-maps", "--root", str(kitti_root)]) == 0
    assert "0 written, 5 already there" in capsys.readouterr().out
    assert target.stat().st_size == 0
    (kitti_root / "ImageSets").mkdir(exist_ok=True)
    (kitti_root / "ImageSets" / "trainval.txt").write_text("000000\n000019\n")  # 000019 has no sweep
    assert main(["depth-maps", "--root", str(kitti_root), "--split", "trainval", "--overwrite"]) == 0
    assert "1/1 frames (1 written" in capsys.readouterr().out
    assert read_depth(target).max() > 10


def test_completion_never_overwrites_a_return_and_handles_empty():
    sparse = np.zeros((40, 60), np.float32)
    sparse[20, 10], sparse[20, 12], sparse[30, 50] = 10.0, 30.0, 120.0  # one beyond the inversion range
    out = complete_depth(sparse)
    assert out[20, 10] == 10.0 and out[20, 12] == 30.0 and out[30, 50] == 120.0
    assert out[20, 11] == pytest.approx(10.0)  # between a near and a far return: the near one spreads
    assert (out[:15] == 0).all()  # above the top return
    assert not complete_depth(np.zeros((8, 8), np.float32)).any()
