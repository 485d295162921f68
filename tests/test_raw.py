"""KITTI raw: the devkit calib pair read into the object benchmark's Calibration, raw split
files, and `monokd depth-maps --raw`."""

from __future__ import annotations

import numpy as np
import pytest

from monokd.cli import main
from monokd.data import raw
from monokd.data.kitti import KittiFormatError, read_calib, read_depth, read_velodyne
from monokd.geometry.calib import lidar_to_image

DRIVE = "2011_09_26_drive_0005_sync"


def _e(values) -> str:
    return " ".join(f"{v:e}" for v in np.asarray(values).reshape(-1))


def write_devkit_calib(date_dir, calib) -> None:
    """The raw devkit's two calib files holding ``calib`` (an object calib), written the way
    the devkit prints them (%e), with the unrectified keys the reader must skip."""
    date_dir.mkdir(parents=True, exist_ok=True)
    cam = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    for index, key in enumerate(("P0", "P1", "P2", "P3")):
        cam += [f"S_0{index}: 1.392000e+03 5.120000e+02", f"K_0{index}: {_e(np.eye(3) * 900)}",
                f"D_0{index}: -3.7e-01 2.0e-01 2.2e-03 1.4e-03 -7.2e-02", f"R_0{index}: {_e(np.eye(3))}",
                f"T_0{index}: 2.57e-16 -1.11e-15 0.0", "S_rect_0{0}: 1.242000e+03 3.750000e+02".format(index),
                f"R_rect_0{index}: {_e(calib.R0_rect if index == 0 else np.eye(3))}",
                f"P_rect_0{index}: {_e(getattr(calib, key))}"]
    (date_dir / raw.CAM_TO_CAM).write_text("\n".join(cam) + "\n")
    velo = ["calib_time: 15-Mar-2012 11:37:16", f"R: {_e(calib.Tr_velo_to_cam[:, :3])}",
            f"T: {_e(calib.Tr_velo_to_cam[:, 3])}", "delta_f: 0.000000e+00 0.000000e+00",
            "delta_c: 0.000000e+00 0.000000e+00"]
    (date_dir / raw.VELO_TO_CAM).write_text("\n".join(velo) + "\n")


@pytest.mark.parametrize("frame", ["000000", "000003"])
def test_raw_calib_is_the_object_calib(kitti_samples, tmp_path, frame):
    training = kitti_samples / "training"
    object_calib = read_calib(training / "calib" / f"{frame}.txt")
    write_devkit_calib(tmp_path / "2011_09_26", object_calib)
    raw_calib = raw.read_raw_calib(tmp_path / "2011_09_26")
    for key in ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam"):
        assert np.array_equal(getattr(raw_calib, key), getattr(object_calib, key)), key
    assert np.array_equal(raw_calib.Tr_imu_to_velo, np.eye(3, 4))  # no calib_imu_to_velo.txt
    points = read_velodyne(training / "velodyne" / f"{frame}.bin")[:, :3]
    points = points[points[:, 0] > 1.0]  # ahead of the sensor
    uv_object, z_object = lidar_to_image(points, object_calib)
    uv_raw, z_raw = lidar_to_image(points, raw_calib)
    assert len(points) > 10000
    assert np.abs(uv_raw - uv_object).max() <= 1e-6 and np.abs(z_raw - z_object).max() <= 1e-9


def test_raw_calib_round_trips_and_needs_its_keys(tmp_path):
    calib = read_calib_like()
    raw.write_raw_calib(tmp_path / "d", calib, (416, 128))
    back = raw.read_raw_calib(tmp_path / "d")
    for key in ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo"):
        assert np.allclose(getattr(back, key), getattr(calib, key), rtol=1e-12, atol=1e-15), key
    cam = tmp_path / "d" / raw.CAM_TO_CAM
    cam.write_text("\n".join(l for l in cam.read_text().splitlines() if not l.startswith("P_rect_02")) + "\n")
    with pytest.raises(KittiFormatError, match="calib_cam_to_cam.txt: field 'P_rect_02': missing"):
        raw.read_raw_calib(tmp_path / "d")
    raw.write_raw_calib(tmp_path / "d", calib, (416, 128))
    velo = tmp_path / "d" / raw.VELO_TO_CAM
    velo.write_text(velo.read_text().replace("T: ", "T: 1.0 "))
    with pytest.raises(KittiFormatError, match=r"calib_velo_to_cam.txt:3: field 'T': expected 3 numbers, found 4"):
        raw.read_raw_calib(tmp_path / "d")


def read_calib_like():
    from monokd.data.synth.camera import make_calibration

    return make_calibration(416, 128)


def test_split_line_forms():
    expected = raw.RawFrame(DRIVE, "0000000109")
    for text in (f"{DRIVE} 0000000109", f"{DRIVE} 109", f"2011_09_26/{DRIVE} 109 l",
                 f"2011_09_26/{DRIVE}/image_02/data/0000000109", f"2011_09_26/{DRIVE}/image_02/data/0000000109.png",
                 f"{DRIVE}/image_02/data/0000000109"):
        assert raw.parse_raw_split_line(text) == expected, text
    assert expected.id == f"{DRIVE}/0000000109" and expected.date == "2011_09_26"
    assert raw.frame_from_id(expected.id) == expected


@pytest.mark.parametrize("line, field, reason", [
    ("2011_09_26_drive_05_sync 3", "drive", "not a raw drive name"),
    (f"{DRIVE} 12a", "frame", "not a frame number"),
    (f"{DRIVE} 00000000001", "frame", "not a frame number"),
    (f"2011_09_26/{DRIVE} 3 r", "camera", "image_03 frames are not read"),
    (f"2011_09_26/{DRIVE} 3 x", "side", "expected l or r"),
    (f"2011_09_28/{DRIVE} 3", "date", "does not match drive"),
    (f"2011_09_26/{DRIVE}/image_03/data/0000000003", "camera", "image_03"),
    ("000123", None, "expected '<drive> <frame>'"),
    (f"{DRIVE} 1 l extra", None, "expected '<drive> <frame>'"),
])
def test_malformed_split_line_names_file_and_line(tmp_path, line, field, reason):
    path = tmp_path / "split.txt"
    path.write_text(f"{DRIVE} 0000000001\n\n{line}\n")
    with pytest.raises(KittiFormatError, match=reason) as err:
        raw.read_raw_split(path)
    assert err.value.path == str(path) and err.value.line == 3 and err.value.field == field


def test_split_refuses_repeats_and_missing_images(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text(f"{DRIVE} 1\n2011_09_26/{DRIVE} 0000000001 l\n")
    with pytest.raises(KittiFormatError, match=r"split.txt:2: field 'frame': .* listed twice \(first on line 1\)"):
        raw.read_raw_split(path)
    path.write_text(f"{DRIVE} 1\n")
    with pytest.raises(KittiFormatError, match=r"split.txt:1: .*has no image"):
        raw.read_raw_split(path, tmp_path)
    frames = [raw.RawFrame(DRIVE, "0000000003"), raw.RawFrame(DRIVE, "0000000001")]
    raw.write_raw_split(path, frames)
    assert raw.read_raw_split(path) == frames


@pytest.fixture(scope="module")
def raw_root(kitti_samples, tmp_path_factory):
    """Real frames 000001 and 000002 as frames 7 and 8 of one raw drive (their calib files are
    the same, as those of one date are)."""
    root = tmp_path_factory.mktemp("raw")
    training = kitti_samples / "training"
    assert (training / "calib" / "000001.txt").read_bytes() == (training / "calib" / "000002.txt").read_bytes()
    write_devkit_calib(root / "2011_09_26", read_calib(training / "calib" / "000001.txt"))
    drive = root / "2011_09_26" / DRIVE
    for index, frame in ((7, "000001"), (8, "000002")):
        for kind, folder, ext in (("image_2", "image_02", "png"), ("velodyne", "velodyne_points", "bin")):
            target = drive / folder / "data" / f"{index:010d}.{ext}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(training / kind / f"{frame}.{ext}")
    return root


def test_list_raw_frames(raw_root):
    assert raw.list_raw_frames(raw_root) == [raw.RawFrame(DRIVE, "0000000007"), raw.RawFrame(DRIVE, "0000000008")]


def test_depth_maps_on_raw_frames(raw_root, kitti_samples, capsys):
    from monokd.data.depth_maps import frame_depth

    (raw_root / "ImageSets").mkdir(exist_ok=True)
    (raw_root / "ImageSets" / "one.txt").write_text(f"2011_09_26/{DRIVE}/image_02/data/0000000007\n")
    assert main(["depth-maps", "--root", str(raw_root), "--raw", "--split", "one"]) == 0
    written = raw_root / "2011_09_26" / DRIVE / "depth_02" / "data" / "0000000007.png"
    expected = frame_depth(kitti_samples, "000001")
    assert np.array_equal(read_depth(written), np.round(expected * 256) / 256)
    assert not written.with_name("0000000008.png").exists()
    assert main(["depth-maps", "--root", str(raw_root), "--raw"]) == 0
    assert "2/2 frames (1 written, 1 already there" in capsys.readouterr().out


def test_depth_maps_raw_without_sweeps_is_an_error(tmp_path, capsys):
    assert main(["depth-maps", "--root", str(tmp_path), "--raw"]) != 0
    assert "velodyne_points" in capsys.readouterr().err
