"""Unlabeled KITTI raw frames: SynthKITTI's raw drives, the UnlabeledDataset's items and
batches, its guard and checks at construction, and data.unlabeled's validation."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from monokd.cli import main
from monokd.data import leakage, raw
from monokd.data.dataset import KittiDataset, collate, data_config
from monokd.data.kitti import KittiFormatError, KittiPaths, read_calib, read_depth, read_split
from monokd.data.synth.raw_drives import DATE, plan_drives
from monokd.data.unlabeled import MixedDataset, UnlabeledDataset, unlabeled_options, unlabeled_per_batch
from monokd.errors import ConfigError, MonokdWarning

SIZE = (160, 64)
VAL_DRIVE = f"{DATE}_drive_0001_sync"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """4 train + 2 val frames, and 3 raw drives with 2 fresh frames each (val in drive 1)."""
    root = tmp_path_factory.mktemp("synth_raw")
    assert main(["synth", "--out", str(root), "--num-train", "4", "--num-val", "2", "--width", str(SIZE[0]),
                 "--height", str(SIZE[1]), "--raw-drives", "3", "--raw-frames", "2"]) == 0
    return root


def _cfg(synth, **unlabeled) -> dict:
    return {"data": {"root": str(synth), "input_size": list(SIZE), "depth_maps": "depth_2", "load_points": True,
                     "unlabeled": {"root": str(synth / "raw"), "split": "unlabeled", **unlabeled}}}


def test_synth_raw_drives_round_trip(synth):
    raw_root = synth / "raw"
    paths = raw.RawPaths(raw_root)
    object_calib = read_calib(KittiPaths(synth).file("calib", "000000"))
    raw_calib = raw.read_raw_calib(raw_root / DATE)
    for key in ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo"):
        assert np.array_equal(getattr(raw_calib, key), getattr(object_calib, key)), key
    every = raw.read_raw_split(paths.split("all"), raw_root)
    assert every == raw.list_raw_frames(raw_root) and len(every) == 3 * 2 + 6
    to_raw = leakage.object_to_raw(synth / "mapping")
    assert sorted(to_raw) == [f"{i:06d}" for i in range(6)] and len(set(to_raw.values())) == 6
    for object_id, frame in to_raw.items():  # the mapping points at the object frame's own files
        for kind in ("image_2", "velodyne", "depth_2"):
            assert paths.file(kind, frame).read_bytes() == KittiPaths(synth).file(kind, object_id).read_bytes()
    val = read_split(KittiPaths(synth).split("val"))
    assert {to_raw[i].drive for i in val} == {VAL_DRIVE}
    clean = raw.read_raw_split(paths.split("unlabeled"), raw_root)
    assert len(clean) == 4 and VAL_DRIVE not in {f.drive for f in clean} and not set(clean) & set(to_raw.values())
    images = [paths.file("image_2", f).read_bytes() for f in every]
    assert len(set(images)) == len(images)  # fresh frames are renders of their own


def test_plan_places_object_frames_evenly():
    plan = plan_drives(["000000", "000001", "000002"], ["000003", "000004"], drives=2, fresh=4, val_drives=1)
    assert plan.slots[0] == [None, "000000", None, "000002", None, "000003", None, "000004"]
    assert plan.slots[1] == [None, None, "000001", None, None]
    with pytest.raises(ValueError, match="val_drives"):
        plan_drives([], ["000000"], drives=2, fresh=1, val_drives=0)


def test_unlabeled_items_have_the_labeled_items_keys(synth):
    cfg = _cfg(synth)
    labeled = KittiDataset(synth, "train", cfg, augment=False)
    unlabeled = UnlabeledDataset(cfg, augment=False)
    assert len(unlabeled) == 4 and unlabeled.ids[0] == f"{DATE}_drive_0002_sync/0000000000"
    one, other = labeled[0], unlabeled[0]
    assert set(other) == set(one) | {"labeled"} and other["labeled"] is False
    assert all(len(v) == 0 for v in other["targets"].values())
    assert set(other["targets"]) == set(one["targets"])
    depth = read_depth(raw.RawPaths(synth / "raw").file("depth_2", unlabeled.frames[0]))
    assert torch.allclose(other["depth_map"][0], torch.from_numpy(depth), atol=1 / 256)  # input size = image size
    assert other["points"].shape[0] > 1000 and other["frame_id"] == unlabeled.ids[0]
    batch = collate([one, other])
    assert batch["labeled"].tolist() == [True, False] and batch["images"].shape == (2, 3, SIZE[1], SIZE[0])
    assert batch["depth_maps"].shape == (2, 1, SIZE[1], SIZE[0]) and len(batch["points"]) == 2
    assert collate([one])["labeled"].tolist() == [True]


def test_unlabeled_frames_augment_like_labeled_ones(synth):
    dataset = UnlabeledDataset(_cfg(synth))
    assert dataset.augment  # training data unless data.augment.enabled says otherwise
    assert not UnlabeledDataset({"data": {**_cfg(synth)["data"], "augment": {"enabled": False}}}).augment


def test_guard_refuses_the_val_drive_at_construction(synth):
    with pytest.raises(ConfigError, match=rf"drives that hold frames of the val split 'val', 2 of them val frames "
                                          rf"themselves: {VAL_DRIVE} \(6 frames\)"):
        UnlabeledDataset(_cfg(synth, split="all"))
    with pytest.warns(MonokdWarning, match="allowed by data.unlabeled.allow_overlap"):
        dataset = UnlabeledDataset(_cfg(synth, split="all", allow_overlap=True))
    assert len(dataset) == 12 and len(dataset.notes) == 1


def test_guard_without_mapping_warns_once(synth, tmp_path):
    cfg = _cfg(synth, split="all")
    cfg["data"]["root"] = str(tmp_path)  # an object root without mapping files
    cfg["data"]["unlabeled"]["root"] = str(shutil.copytree(synth / "raw", tmp_path / "raw"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        UnlabeledDataset(cfg)
        dataset = UnlabeledDataset(cfg)
    shown = [w for w in caught if issubclass(w.category, MonokdWarning)]
    assert len(shown) == 1 and "cannot check" in str(shown[0].message) and "cannot check" in dataset.notes[0]


def test_construction_checks_the_frames(synth, tmp_path):
    raw_root = shutil.copytree(synth / "raw", tmp_path / "raw")
    cfg = _cfg(synth, root=str(raw_root))
    first = raw.read_raw_split(raw.RawPaths(raw_root).split("unlabeled"))[1]
    depth = raw.RawPaths(raw_root).file("depth_2", first)
    depth.unlink()
    with pytest.raises(KittiFormatError, match=rf"{depth}: depth map of {first.id} not found"):
        UnlabeledDataset(cfg)
    (raw_root / DATE / raw.VELO_TO_CAM).unlink()
    with pytest.raises(KittiFormatError, match="calib_velo_to_cam.txt: calib file not found"):
        UnlabeledDataset(cfg)
    (raw_root / "ImageSets" / "unlabeled.txt").write_text(f"{VAL_DRIVE.replace('0001', '0009')} 3\n")
    with pytest.raises(KittiFormatError, match=r"unlabeled.txt:1: field 'frame': .* has no image"):
        UnlabeledDataset(cfg)


@pytest.mark.parametrize("section, message", [
    ({"root": "r", "shares": 0.5}, r"data.unlabeled.shares: unknown key"),
    ({"root": "r", "share": 1.0}, r"data.unlabeled.share: 1.0 is not in \[0, 1\)"),
    ({"root": "r", "share": -0.1}, r"data.unlabeled.share: -0.1 is not in"),
    ({"root": "r", "share": "half"}, r"data.unlabeled.share: expected a number"),
    ({"root": "r", "allow_overlap": "yes"}, r"data.unlabeled.allow_overlap: expected true or false"),
    ({"split": "s"}, r"data.unlabeled.root: no KITTI raw root given"),
    ({"root": 3}, r"data.unlabeled.root: expected a path"),
    ("raw", r"data.unlabeled: expected a mapping"),
])
def test_config_section_is_validated(section, message):
    with pytest.raises(ConfigError, match=message):
        data_config({"data": {"unlabeled": section}})


def test_config_defaults():
    assert data_config({})["unlabeled"] is None
    assert unlabeled_options({"root": "r"}) == {"root": "r", "split": None, "share": 0.5, "allow_overlap": False,
                                               "mapping": None}


@pytest.mark.parametrize("batch_size, share, counts", [
    (1, 0.5, [0, 1, 0, 1, 0, 1]), (8, 0.25, [2] * 6), (4, 0.3, [1, 1, 1, 1, 2, 1]), (3, 0.0, [0] * 6),
])
def test_unlabeled_per_batch_keeps_the_share(batch_size, share, counts):
    got = [unlabeled_per_batch(b, batch_size, share) for b in range(6)]
    assert got == counts
    total = sum(unlabeled_per_batch(b, batch_size, share) for b in range(1000))
    assert total == int(1000 * batch_size * share + 1e-9)


def test_mixed_dataset_indexes_both_and_resets_draws(synth):
    cfg = _cfg(synth)
    labeled, unlabeled = KittiDataset(synth, "train", cfg, augment=False), UnlabeledDataset(cfg, augment=False)
    mixed = MixedDataset(labeled, unlabeled)
    assert len(mixed) == 8 and mixed[3]["frame_id"] == "000003" and mixed[4]["frame_id"] == unlabeled.ids[0]
    mixed._draws = 0
    assert labeled._draws == 0 and unlabeled._draws == 0


def test_mixed_sampler_batches():
    from monokd.training.sampling import MixedEpochBatchSampler

    sampler = MixedEpochBatchSampler(labeled=6, unlabeled=4, batch_size=4, share=0.5, seed=3)
    batches = sampler.batches(0)
    assert [sum(i < 6 for i in b) for b in batches] == [2, 2, 2]  # an epoch = one pass over the labeled frames
    assert sorted(i for b in batches for i in b if i < 6) == list(range(6))
    unlabeled = [i for b in batches for i in b if i >= 6]
    assert sorted(unlabeled[:4]) == [6, 7, 8, 9] and len(unlabeled) == 6  # all seen before any repeats
    assert len(sampler) == 3 and batches != sampler.batches(1) and batches == sampler.batches(0)
    sampler.resume(0, 2)
    assert [[i for _, i in b] for b in sampler] == batches[2:]
    alternate = MixedEpochBatchSampler(labeled=3, unlabeled=2, batch_size=1, share=0.5, seed=0).batches(0)
    assert [b[0] >= 3 for b in alternate] == [False, True, False, True, False]
    assert [b for b in MixedEpochBatchSampler(5, 0, 2, 0.0, 0).batches(0)] == _plain_batches(5, 2)


def _plain_batches(size, batch_size):
    from monokd.training.sampling import EpochBatchSampler

    return [[i for _, i in b] for b in EpochBatchSampler(size, batch_size, 0)]


@pytest.mark.parametrize("key, value", [("depth_pred_dir", "preds"), ("proposals", {"train": "gt"})])
def test_object_only_inputs_are_refused(synth, key, value):
    cfg = _cfg(synth)
    cfg["data"][key] = value
    with pytest.raises(ConfigError, match=f"data.{key}: not available for unlabeled frames"):
        UnlabeledDataset(cfg)


def test_explicit_mapping_needs_the_object_root(synth):
    cfg = _cfg(synth, mapping=str(synth / "mapping"))
    del cfg["data"]["root"]
    with pytest.raises(ConfigError, match="data.root: not set"):
        UnlabeledDataset(cfg)


@pytest.mark.parametrize("flags", [["--raw-drives", "2", "--raw-val-drives", "3"], ["--raw-drives", "-1"],
                                   ["--raw-drives", "2", "--raw-frames", "-1"]])
def test_synth_raw_flags_are_checked(tmp_path, capsys, flags):
    assert main(["synth", "--out", str(tmp_path / "d"), "--num-train", "1", "--num-val", "1", *flags]) == 1
    assert "monokd synth: error: --raw-drives/--raw-frames/--raw-val-drives" in capsys.readouterr().err

