"""Bad input through the ``monokd`` command: one line ``monokd <command>: error: ...``, exit 1,
no traceback, found before a model or trainer is built (issue 9's reproductions), and the
checks behind it (monokd.data.checks, monokd.training.preflight)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from monokd.outputs import MARK
from monokd.cli import main
from monokd.config import load_config
from monokd.data.kitti import read_split, write_split
from monokd.training.preflight import PROVENANCE_KEY, check_teacher, split_record
from monokd.errors import ConfigError, MonokdWarning
from tests.helpers import TINY_MONODETR as TINY, engine_cfg as tiny_cfg, fake_data, one_error, run_fake

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers
def train_args(root: Path, out: Path, *extra: str, config: str = "configs/monodetr_synth.yaml") -> list[str]:
    items = TINY + [f"data.root={root}", "train.epochs=1", *extra]
    return ["train", "--config", config, "--out", str(out)] + [a for i in items for a in ("--set", i)]


def tiny_checkpoint(root: Path, path: Path, *overrides: str, provenance: dict | None = None,
                    config: str = "configs/monodetr_synth.yaml") -> Path:
    """An untrained tiny MonoDETR saved as ``monokd train`` saves it (no training)."""
    from monokd.models import build_detector

    cfg = load_config(config, TINY + [f"data.root={root}", *overrides])
    torch.manual_seed(0)
    model = build_detector(cfg)
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                  "hyper_parameters": {"cfg": cfg}}
    if provenance is not None:
        checkpoint[PROVENANCE_KEY] = provenance
    torch.save(checkpoint, path)
    return path


# --------------------------------------------------------------------------- 1. tracebacks
def test_split_naming_a_frame_without_image_fails_before_the_model(root, tmp_path, capsys, no_model):
    (root / "training" / "image_2" / "000002.png").unlink()
    line = one_error(capsys, train_args(root, tmp_path / "run"))
    assert f"{root / 'ImageSets' / 'train.txt'}:3: field 'id': frame 000002 has no image" in line
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_truncated_velodyne_names_file_and_size(root, tmp_path, capsys, no_model):
    velo = root / "training" / "velodyne" / "000001.bin"
    velo.write_bytes(velo.read_bytes()[:1608])
    line = one_error(capsys, train_args(root, tmp_path / "run", "data.depth_maps=auto"))
    assert line.endswith(f"{velo}: field 'size': 1608 bytes is not a multiple of 16 (4 float32 a point)")


def test_malformed_label_fails_before_the_model(root, tmp_path, capsys, no_model):
    label = root / "training" / "label_2" / "000005.txt"
    label.write_text(label.read_text() + "Car 0.00 0 0.1 10 10 50 50 1.5 oops 3.9 1 1.6 10 0.1\n")
    line = one_error(capsys, train_args(root, tmp_path / "run"))
    assert f"{label}:" in line and "field 'w': not a number: 'oops'" in line


def test_show_frame_without_calib(root, tmp_path, capsys):
    (root / "training" / "calib" / "000004.txt").unlink()
    line = one_error(capsys, ["show", "--root", str(root), "--split", "val", "--ids", "4", "--out", str(tmp_path / "pics")])
    assert "000004.txt: calib file not found" in line


def test_debug_shows_the_traceback(root, tmp_path, monkeypatch):
    (root / "training" / "calib" / "000004.txt").unlink()
    from monokd.errors import KittiFormatError

    with pytest.raises(KittiFormatError):
        main(["show", "--root", str(root), "--ids", "4", "--out", str(tmp_path / "pics"), "--debug"])
    monkeypatch.setenv("MONOKD_DEBUG", "1")
    with pytest.raises(KittiFormatError):
        main(["show", "--root", str(root), "--ids", "4", "--out", str(tmp_path / "pics")])


def test_subprocess_one_line_and_exit_code(root, tmp_path):
    """End to end, as a user runs it: the real process prints one line and exits 1."""
    (root / "training" / "calib" / "000004.txt").unlink()
    run = subprocess.run([sys.executable, "-m", "monokd.cli", "show", "--root", str(root), "--ids", "4",
                          "--out", str(tmp_path / "pics")], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"monokd show: error: {root / 'training' / 'calib' / '000004.txt'}: calib file not found"]


def test_error_from_a_loader_worker_is_one_line_without_its_traceback(capsys):
    from torch.utils.data import DataLoader, Dataset

    from monokd.cli import run_command
    from monokd.errors import KittiFormatError

    class Broken(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            raise KittiFormatError("/d/label_2/000007.txt", 3, "h", "negative dimension -1")

    assert run_command("train", lambda args: list(DataLoader(Broken(), num_workers=1)), None) == 1
    assert capsys.readouterr().err == ("monokd train: error: /d/label_2/000007.txt:3: field 'h': "
                                       "negative dimension -1\n")


@pytest.mark.parametrize("item, key", [("train.epochs=abc", "train.epochs"), ("train.batch_size=0", "train.batch_size"),
                                       ("train.seed=x", "train.seed"),
                                       ("train.lr=[1]", "train.lr"), ("data.input_size=[416]", "data.input_size"),
                                       ("eval.classes=[car]", "eval.classes"), ("data.classes=[Bus]", "data.classes"),
                                       ("data.depth_maps=bogus", "data.depth_maps")])
def test_malformed_setting_names_the_key(root, tmp_path, capsys, no_model, item, key):
    line = one_error(capsys, train_args(root, tmp_path / "run", item))
    assert line.startswith(f"monokd train: error: {key}: ")


def test_model_setting_of_the_wrong_kind_names_the_key(root, tmp_path, capsys):
    """Checked against the model's declared section wherever a config is read, here an
    override of a checkpoint's stored config through predict (the override is named)."""
    ckpt = tiny_checkpoint(root, tmp_path / "c.ckpt")
    line = one_error(capsys, ["predict", "--ckpt", str(ckpt), "--images", str(root / "training" / "image_2"),
                              "--calib", str(root / "training" / "calib" / "000000.txt"), "--out", str(tmp_path / "p"),
                              "--set", "model.hidden_dim=abc"])
    assert line == ("monokd predict: error: --set model.hidden_dim=abc: model.hidden_dim: expected an integer "
                    "(like the default 256), got 'abc'")


def test_subprocess_train_with_a_frame_without_image(root, tmp_path):
    """End to end: ``monokd train`` on a split naming a frame with no image prints one line
    and exits 1, without a traceback and without starting Lightning."""
    (root / "training" / "image_2" / "000002.png").unlink()
    run = subprocess.run([sys.executable, "-m", "monokd.cli", *train_args(root, tmp_path / "run")], capture_output=True,
                         text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"monokd train: error: {root / 'ImageSets' / 'train.txt'}:3: field 'id': frame 000002 has no image in "
        f"{root / 'training' / 'image_2'} (.png, .jpg or .jpeg)"]
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- 2. empty sets
@pytest.mark.parametrize("split", ["train", "val"])
def test_empty_split_is_an_error_naming_the_file(root, tmp_path, capsys, no_model, split):
    (root / "ImageSets" / f"{split}.txt").write_text("\n")
    line = one_error(capsys, train_args(root, tmp_path / "run"))
    assert f"{root / 'ImageSets' / f'{split}.txt'}: field 'id': lists no frames" in line


def test_evaluate_files_with_empty_split(root, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    line = one_error(capsys, ["evaluate", "--gt-dir", str(root / "training" / "label_2"),
                              "--det-dir", str(root / "training" / "label_2"), "--split", str(empty)])
    assert f"{empty}: field 'id': lists no frames" in line


def test_evaluate_checkpoint_with_empty_split(root, tmp_path, capsys):
    ckpt = tiny_checkpoint(root, tmp_path / "c.ckpt")
    (root / "ImageSets" / "empty.txt").write_text("")
    line = one_error(capsys, ["evaluate", "--ckpt", str(ckpt), "--split", "empty", "--out", str(tmp_path / "e")])
    assert f"{root / 'ImageSets' / 'empty.txt'}: field 'id': lists no frames" in line


# --------------------------------------------------------------------------- 3. --set without --config
def test_predict_set_applies_to_the_checkpoint_config(root, tmp_path):
    ckpt = tiny_checkpoint(root, tmp_path / "c.ckpt")
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(root / "training" / "image_2" / "000004.png", images)
    out = tmp_path / "pred"
    code = main(["predict", "--ckpt", str(ckpt), "--images", str(images), "--no-pictures",
                 "--calib", str(root / "training" / "calib" / "000004.txt"), "--out", str(out),
                 "--set", "model.decode.threshold=0.0", "--set", "model.decode.topk=7"])
    assert code == 0
    assert len((out / "data" / "000004.txt").read_text().splitlines()) == 7  # the checkpoint says topk 10


def test_predict_refuses_two_images_of_one_name(root, tmp_path, capsys):
    ckpt = tiny_checkpoint(root, tmp_path / "c.ckpt")
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(root / "training" / "image_2" / "000004.png", images)
    shutil.copy(root / "training" / "image_2" / "000005.png", images / "000004.jpg")
    line = one_error(capsys, ["predict", "--ckpt", str(ckpt), "--images", str(images), "--out", str(tmp_path / "p"),
                              "--calib", str(root / "training" / "calib" / "000004.txt")])
    assert line.endswith(f"{images}: images share a name: 000004 (e.g. 000001.png and 000001.jpg)")


def test_evaluate_set_data_root_is_read(root, tmp_path, capsys):
    ckpt = tiny_checkpoint(root, tmp_path / "c.ckpt")
    other = tmp_path / "other"
    line = one_error(capsys, ["evaluate", "--ckpt", str(ckpt), "--set", f"data.root={other}",
                              "--out", str(tmp_path / "e")])
    assert str(other / "ImageSets" / "val.txt") in line  # not the checkpoint's root


# --------------------------------------------------------------------------- 4. result folders
def test_det_dir_without_results_is_an_error(root, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    line = one_error(capsys, ["evaluate", "--gt-dir", str(root / "training" / "label_2"), "--det-dir", str(run),
                              "--split", str(root / "ImageSets" / "val.txt")])
    assert f"{run}: holds no result file for any of the 4 frames" in line


def test_det_dir_data_subfolder_is_used_and_said(root, tmp_path, capsys):
    data = tmp_path / "run" / "data"
    data.mkdir(parents=True)
    for frame in read_split(root / "ImageSets" / "val.txt"):
        text = "".join(line + " 0.9\n" for line in (root / "training" / "label_2" / f"{frame}.txt").read_text().splitlines())
        (data / f"{frame}.txt").write_text(text)
    common = ["evaluate", "--gt-dir", str(root / "training" / "label_2"), "--split", str(root / "ImageSets" / "val.txt"),
              "--classes", "Car", "--min-height-scale", "0.3413"]
    assert main([*common, "--det-dir", str(tmp_path / "run"), "--json", str(tmp_path / "run.json")]) == 0
    assert f"reading the result files from {data} ({tmp_path / 'run'} holds none)" in capsys.readouterr().out
    assert main([*common, "--det-dir", str(data), "--json", str(tmp_path / "data.json")]) == 0
    assert "reading the result files" not in capsys.readouterr().out
    assert main([*common, "--det-dir", str(data), "--classes", "Car", "Tram"]) == 0
    assert "label_2: no ground-truth object of Tram in the 4 frames: their AP reads 0" in capsys.readouterr().err
    flat = json.loads((tmp_path / "run.json").read_text())["flat"]
    assert flat == json.loads((tmp_path / "data.json").read_text())["flat"]
    assert flat["Car/bev/easy/R40@0.50"] > 0  # the ground truth, read as detections, is found


# --------------------------------------------------------------------------- 5. teachers and overlaps
def _teacher(root: Path, tmp_path: Path, train_ids: list[str], depth_input: str | None = "gt_object") -> Path:
    record = split_record(train_ids, "train", root)
    return tiny_checkpoint(root, tmp_path / "teacher.ckpt", f"model.depth_input={depth_input or 'null'}",
                           provenance={"train": record, "val": None, "role": {"depth_input": depth_input}})


def _distill_args(root, tmp_path, teacher: Path, *extra: str) -> list[str]:
    return train_args(root, tmp_path / "run", f"distill.teacher.ckpt={teacher}", "distill.teacher.config=null",
                      *extra, config="configs/add_monodetr_synth.yaml")


def test_plain_teacher_is_refused(root, tmp_path, capsys, no_model):
    teacher = _teacher(root, tmp_path, read_split(root / "ImageSets" / "train.txt"), depth_input=None)
    line = one_error(capsys, _distill_args(root, tmp_path, teacher))
    assert "is a plain model" in line and "distill.teacher.allow_plain=true" in line


def test_teacher_trained_on_val_frames_is_refused(root, tmp_path, capsys, no_model):
    ids = read_split(root / "ImageSets" / "train.txt") + read_split(root / "ImageSets" / "val.txt")[:1]
    teacher = _teacher(root, tmp_path, ids)
    line = one_error(capsys, _distill_args(root, tmp_path, teacher))
    assert "was trained on 1 of the student's 4 validation frames" in line and "allow_overlap=true" in line


def test_teacher_without_record_falls_back_on_its_config_split(root, tmp_path):
    write_split(root / "ImageSets" / "trainval.txt", read_split(root / "ImageSets" / "train.txt")
                + read_split(root / "ImageSets" / "val.txt"))
    teacher = tiny_checkpoint(root, tmp_path / "t.ckpt", "model.depth_input=gt_object", "data.train_split=trainval")
    cfg = {"distill": {"teacher": {"ckpt": str(teacher)}}}
    val = split_record(read_split(root / "ImageSets" / "val.txt"), "val", root)
    with pytest.raises(ConfigError, match="trained on 4 of the student's 4 validation frames"):
        check_teacher(cfg, val)
    cfg["distill"]["teacher"].update(allow_overlap=True)
    with pytest.warns(MonokdWarning, match="allowed by distill.teacher.allow_overlap"):
        assert len(check_teacher(cfg, val)) == 1


def test_allowed_overlap_is_noted_in_metrics_and_checkpoint_records_splits(tmp_path):
    """A distillation config run with a fake detector: the override's note reaches
    metrics.json, and the checkpoint records both splits and the model's role."""
    data_root = tmp_path / "data"
    cfg = tiny_cfg(data_root, epochs=1, ckpt_every_steps=0)
    val_ids = [f"{100 + i:06d}" for i in range(2)]  # fake_data's val frames
    teacher = tmp_path / "teacher.ckpt"
    record = split_record(val_ids, "trainval", data_root)
    torch.save({"state_dict": {}, "hyper_parameters": {"cfg": {"model": {"depth_input": "gt_object"}}},
                PROVENANCE_KEY: {"train": record}}, teacher)
    cfg["distill"] = {"teacher": {"ckpt": str(teacher), "allow_overlap": True}}
    with pytest.warns(MonokdWarning):
        run_fake(data_root, tmp_path / "run", cfg)
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["notes"]
    assert len(notes) == 1 and "was trained on 2 of the student's 2 validation frames" in notes[0]
    saved = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)[PROVENANCE_KEY]
    assert saved["train"]["ids"] == [f"{i:06d}" for i in range(6)] and saved["val"]["ids"] == val_ids
    assert saved["train"]["sha256"] == split_record(saved["train"]["ids"][::-1], "", "")["sha256"]
    assert saved["role"] == {"depth_input": None, "lidar_input": False, "privileged_inputs": []}


def test_cli_run_whose_train_and_val_overlap_warns_before_the_model(root, tmp_path, capsys, no_model):
    shutil.copy(root / "ImageSets" / "train.txt", root / "ImageSets" / "val.txt")
    with pytest.raises(AssertionError, match="the model was built"):  # the checks passed, with a warning
        main(train_args(root, tmp_path / "run"))
    err = capsys.readouterr().err
    assert err.startswith("monokd train: warning: train ('train') and val ('val') share 4 of 4 validation frames")


def test_evaluating_a_checkpoint_on_its_training_frames_warns(root, tmp_path, capsys):
    ids = read_split(root / "ImageSets" / "val.txt")[:2]
    ckpt = tiny_checkpoint(root, tmp_path / "c.ckpt", provenance={"train": split_record(ids, "train", root)})
    assert main(["evaluate", "--ckpt", str(ckpt), "--out", str(tmp_path / "e")]) == 0
    assert f"monokd evaluate: warning: {ckpt} was trained on 2 of the 4 frames of 'val'" in capsys.readouterr().err


def test_run_whose_train_and_val_overlap_warns(tmp_path):
    cfg = tiny_cfg(tmp_path, epochs=1)
    data = fake_data(tmp_path, cfg, n_train=2, n_val=2)
    data._val_set.ids = list(data._train_set.ids)
    from monokd.training.preflight import check_run

    with pytest.warns(MonokdWarning, match="share 2 of 2 validation frames"):
        provenance = check_run(cfg, data)
    assert provenance["notes"] and provenance["train"]["sha256"] == provenance["val"]["sha256"]


# --------------------------------------------------------------------------- 6. images that are not PNG
def test_show_draws_jpg_frames(root, tmp_path):
    import cv2

    for path in (root / "training" / "image_2").glob("*.png"):
        cv2.imwrite(str(path.with_suffix(".jpg")), cv2.imread(str(path)))
        path.unlink()
    assert main(["show", "--root", str(root), "--split", "val", "--out", str(tmp_path / "pics")]) == 0
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == [MARK] + [f"{i:06d}.png" for i in range(4, 8)]


def test_jpg_frames_are_read_like_png(root):
    import cv2

    from monokd.data.dataset import KittiDataset

    png = KittiDataset(root, None, augment=False)[0]
    for path in (root / "training" / "image_2").glob("*.png"):
        image = cv2.imread(str(path))
        suffix = ".jpeg" if path.stem.endswith("1") else ".jpg"
        cv2.imwrite(str(path.with_suffix(suffix)), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
        path.unlink()
    every = KittiDataset(root, None, augment=False)
    split = KittiDataset(root, "train", augment=False)
    assert every.ids == [f"{i:06d}" for i in range(8)] and len(split) == 4
    jpg = every[0]
    assert jpg["image"].shape == png["image"].shape
    assert (jpg["image"] - png["image"]).abs().mean() < 0.05  # the same picture, JPEG-compressed
    assert torch.equal(jpg["targets"]["boxes_2d"], png["targets"]["boxes_2d"])


# --------------------------------------------------------------------------- files checked against each other
def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _label_for_wider_image(root: Path):
    label = root / "training" / "label_2" / "000000.txt"
    parts = label.read_text().splitlines()[0].split()
    parts[6] = "2000.00"  # x2 of a 416-px-wide image
    label.write_text(" ".join(parts) + "\n")
    return label, 1, "x2"


def _calib_of_another_camera(root: Path):
    calib = root / "training" / "calib" / "000001.txt"
    lines = calib.read_text().splitlines()
    p2 = lines[2].split()
    p2[3] = "5.0e+03"  # cx far outside the image
    lines[2] = " ".join(p2)
    calib.write_text("\n".join(lines) + "\n")
    return calib, None, "P2"


def _depth_of_another_size(root: Path):
    import cv2

    depth = root / "training" / "depth_2" / "000002.png"
    raw = cv2.imread(str(depth), cv2.IMREAD_ANYDEPTH)
    cv2.imwrite(str(depth), cv2.resize(raw, (208, 64), interpolation=cv2.INTER_NEAREST))
    return depth, None, "size"


def _calib_shifted_off_the_labels(root: Path):
    calib = root / "training" / "calib" / "000002.txt"
    lines = calib.read_text().splitlines()
    p2 = lines[2].split()
    p2[3] = "0.0"  # cx = 0: still inside the image, but every box lands ~200 px to the left
    lines[2] = " ".join(p2)
    calib.write_text("\n".join(lines) + "\n")
    return root / "training" / "label_2" / "000002.txt", ..., "location"


def _empty_lidar_transform(root: Path):
    calib = root / "training" / "calib" / "000003.txt"
    lines = [("Tr_velo_to_cam: " + " ".join(["0"] * 12)) if line.startswith("Tr_velo_to_cam") else line
             for line in calib.read_text().splitlines()]
    calib.write_text("\n".join(lines) + "\n")
    return calib, None, "Tr_velo_to_cam"


def _truncated_jpeg(root: Path):
    import cv2

    image = root / "training" / "image_2" / "000001.png"
    jpeg = image.with_suffix(".jpg")
    cv2.imwrite(str(jpeg), cv2.imread(str(image)))
    image.unlink()
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])  # a decoder fills the rest with grey
    return jpeg, None, "size"


def _missing_label(root: Path):
    (root / "training" / "label_2" / "000001.txt").unlink()
    return root / "ImageSets" / "train.txt", 2, "id"


def _repeated_id(root: Path):
    split = root / "ImageSets" / "train.txt"
    split.write_text(split.read_text() + "0\n")
    return split, 5, "id"


@pytest.mark.parametrize("corrupt, data", [
    (_label_for_wider_image, {}), (_calib_of_another_camera, {}), (_calib_shifted_off_the_labels, {}),
    (_depth_of_another_size, {"depth_maps": "depth_2"}),
    (_empty_lidar_transform, {"load_points": True}), (_truncated_jpeg, {}), (_missing_label, {}), (_repeated_id, {})])
def test_dataset_checks_each_file_against_its_frame(root, corrupt, data):
    from monokd.data.dataset import KittiDataset
    from monokd.errors import KittiFormatError

    cfg = {"data": {"input_size": [416, 128], **data}}
    KittiDataset(root, "train", cfg)  # the intact frames pass
    path, line, field = corrupt(root)
    with pytest.raises(KittiFormatError) as info:
        KittiDataset(root, "train", cfg)
    assert (info.value.path, info.value.field) == (str(path), field)
    assert line is ... or info.value.line == line  # ...: the first object that disagrees


def test_estimated_depth_maps_are_checked_against_their_frames(root):
    from monokd.data.dataset import KittiDataset
    from monokd.data.kitti import write_depth
    from monokd.errors import KittiFormatError

    pred = root / "depth_pred"
    cfg = {"data": {"input_size": [416, 128], "depth_pred_dir": str(pred)}}
    for frame in read_split(root / "ImageSets" / "train.txt")[:3]:
        write_depth(pred / f"{frame}.png", np.full((128, 416), 10.0))
    with pytest.raises(KittiFormatError) as info:  # frame 000003 has none
        KittiDataset(root, "train", cfg)
    assert (info.value.path, info.value.line, info.value.field) == (str(root / "ImageSets" / "train.txt"), 4, "id")
    write_depth(pred / "000003.png", np.full((64, 208), 10.0))
    with pytest.raises(KittiFormatError, match="208x64 depth map for a 416x128 image") as info:
        KittiDataset(root, "train", cfg)
    assert info.value.field == "size"


def test_sweep_that_misses_the_image_is_named(root):
    from monokd.data.dataset import KittiDataset
    from monokd.data.kitti import read_velodyne, write_velodyne
    from monokd.errors import KittiFormatError

    velo = root / "training" / "velodyne" / "000000.bin"
    points = read_velodyne(velo)
    points[:, 0] = -np.abs(points[:, 0]) - 1.0  # every point behind the camera (x forward in LiDAR)
    write_velodyne(velo, points)
    dataset = KittiDataset(root, "train", {"data": {"input_size": [416, 128], "depth_maps": "lidar"}}, augment=False)
    assert dataset[1]["depth_map"].gt(0).any()  # an intact frame
    with pytest.raises(KittiFormatError, match=f"none of its {len(points)} points projects into the") as info:
        dataset[0]
    assert info.value.field == "points" and info.value.path == str(velo)


def _keep_only(root: Path, frames, kind: str) -> None:
    """Relabel every object of ``frames`` as ``kind``."""
    for frame in frames:
        label = root / "training" / "label_2" / f"{frame}.txt"
        lines = [line.split() for line in label.read_text().splitlines()]
        label.write_text("".join(" ".join([kind if p[0] != "DontCare" else p[0]] + p[1:]) + "\n" for p in lines))


def test_train_split_without_an_object_of_the_classes_is_an_error(root, tmp_path, capsys, no_model):
    _keep_only(root, read_split(root / "ImageSets" / "train.txt"), "Tram")
    line = one_error(capsys, train_args(root, tmp_path / "run"))
    assert "data.train_split: 'train' holds no object of data.classes ['Car']" in line


def test_val_split_without_the_monitored_class_warns(root, tmp_path, capsys, no_model):
    _keep_only(root, read_split(root / "ImageSets" / "val.txt"), "Tram")
    with pytest.raises(AssertionError, match="the model was built"):
        main(train_args(root, tmp_path / "run"))
    assert "monokd train: warning: data.val_split: 'val' holds no 'Car' object" in capsys.readouterr().err


# --------------------------------------------------------------------------- commands that once printed their own errors
def test_demo_unknown_student_takes_the_one_error_path(tmp_path, capsys):
    line = one_error(capsys, ["demo", "--student", "nope", "--out", str(tmp_path / "demo")])
    assert "--student nope: unknown (known: " in line
    assert not (tmp_path / "demo").exists()
    with pytest.raises(ConfigError, match="--student nope"):
        main(["demo", "--student", "nope", "--out", str(tmp_path / "demo"), "--debug"])


def test_ablate_unknown_row_takes_the_one_error_path(tmp_path, capsys):
    line = one_error(capsys, ["ablate", "--preset", "quick", "--rows", "nope", "--out", str(tmp_path / "runs"),
                              "--results", str(tmp_path / "results")])
    assert "--rows: unknown row 'nope'" in line
    assert not (tmp_path / "runs").exists()


def test_depth_maps_missing_root_says_so(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    line = one_error(capsys, ["depth-maps", "--root", str(missing)])
    assert line == f"monokd depth-maps: error: {missing}: the KITTI root does not exist (or is not a folder)"
    line = one_error(capsys, ["depth-maps", "--root", str(tmp_path)])  # there, but no sweep
    assert f"{tmp_path}: no frame with a velodyne sweep" in line
    from monokd.errors import KittiFormatError

    with pytest.raises(KittiFormatError, match="does not exist"):
        main(["depth-maps", "--root", str(missing), "--debug"])


def test_depth_action_names_itself_and_accepts_debug(tmp_path, capsys):
    argv = ["depth", "train", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "run")]
    assert main(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("monokd depth train: error: ") and "missing.yaml" in lines[0]
    with pytest.raises((ConfigError, OSError)):  # --debug parsed after the action: the traceback
        main([*argv, "--debug"])
