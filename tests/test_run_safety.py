"""No trained run is lost and no wrong input passes silently, through the ``monokd`` command:
exit 1, one stderr line naming the file (and line and field), no traceback, and the earlier
run's files byte-identical afterwards (run folders, resume, disk full, weight files, missing
result files, impossible labels, sweeps and depth maps)."""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from monokd import atomic
from monokd.cli import main
from monokd.config import load_config
from tests.helpers import TINY_MONODETR, one_error

pytestmark = pytest.mark.slow


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    """``monokd train`` of a tiny MonoDETR (one epoch) on ``root`` into ``out``."""
    items = TINY_MONODETR + [f"data.root={root}", "train.epochs=1", *extra]
    return (["train", "--config", "configs/monodetr_synth.yaml", "--out", str(out)]
            + [a for i in items for a in ("--set", i)])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def full_disk(monkeypatch, when=lambda path: True) -> None:
    """Every write through monokd.atomic for which ``when(path)`` holds runs out of disk half-way
    (a partial temporary, then ENOSPC), as a full disk does."""
    real = atomic._write_all

    def write(path, data):
        if not when(Path(path)):
            return real(path, data)
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic, "_write_all", write)


def leftovers(folder: Path) -> list[str]:
    """Temporaries (monokd.atomic's ``.<stem>.tmp<pid><suffix>``) under ``folder``."""
    return sorted(str(p) for p in folder.rglob(".*.tmp*"))


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory) -> Path:
    """A finished one-epoch run of a tiny MonoDETR (module-wide: copy it before changing it)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(train_args(synth_root, out)) == 0
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run."""
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


# --------------------------------------------------------------------------- run folders
def test_train_into_a_folder_holding_a_run_is_refused_and_the_run_kept(run, synth_root, capsys):
    before = snapshot(run)
    line = one_error(capsys, train_args(synth_root, run))
    assert f"{run}: holds a run" in line and "--resume auto" in line and "fresh --out" in line
    assert "--overwrite" in line
    assert snapshot(run) == before


def test_overwrite_replaces_the_run(run, synth_root):
    (run / "best.ckpt").unlink()
    stale = (run / "last.ckpt").read_bytes()
    assert main(train_args(synth_root, run, "train.seed=3") + ["--overwrite"]) == 0
    assert (run / "last.ckpt").read_bytes() != stale
    assert load_config(run / "config.yaml")["train"]["seed"] == 3


def test_a_second_training_into_a_locked_folder_fails_at_once(run, synth_root, capsys, no_model):
    from monokd.training.rundir import RunLock

    before = snapshot(run)
    lock = RunLock(run)  # another `monokd train` holds the folder
    try:
        line = one_error(capsys, train_args(synth_root, run, "train.epochs=2") + ["--resume", "auto"])
    finally:
        lock.release()
    assert "another `monokd train` is writing into this folder" in line
    assert snapshot(run) == before


def test_a_failed_check_in_a_new_folder_leaves_nothing(synth_root, tmp_path, capsys):
    out = tmp_path / "new" / "run"
    one_error(capsys, train_args(synth_root, out, "train.batch_size=0"))
    assert not out.exists()


# --------------------------------------------------------------------------- resume
def test_resume_with_a_changed_config_is_refused_naming_the_keys(run, synth_root, capsys, no_model):
    before = snapshot(run)
    line = one_error(capsys, train_args(synth_root, run, "train.lr=0.0005", "train.epochs=2") + ["--resume", "auto"])
    assert f"{run / 'last.ckpt'}: the config differs from the run's in train.lr; a resume" in line
    assert "--resume-changed" in line
    assert snapshot(run) == before  # config.yaml included


def test_resume_changed_is_recorded_in_the_notes(run, synth_root):
    assert main(train_args(synth_root, run, "train.lr=0.0005", "train.epochs=2")
                + ["--resume", "auto", "--resume-changed"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert any("--resume-changed" in n and "train.lr" in n for n in metrics["notes"])


def test_resume_of_another_model_is_refused_before_anything_is_written(run, synth_root, capsys):
    before = snapshot(run)
    line = one_error(capsys, train_args(synth_root, run, "model.hidden_dim=64", "train.epochs=2")
                     + ["--resume", "auto", "--resume-changed"])
    assert f"{run / 'last.ckpt'} does not fit the model" in line and "shape mismatches" in line
    assert snapshot(run) == before


def test_resume_of_a_truncated_checkpoint_is_one_line(run, synth_root, capsys):
    last = run / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short
    before = snapshot(run)
    line = one_error(capsys, train_args(synth_root, run, "train.epochs=2") + ["--resume", "auto"])
    assert f"{last}: not a readable monokd checkpoint" in line
    assert snapshot(run) == before


def test_max_steps_mid_epoch_ends_with_a_validation(synth_root, tmp_path):
    out = tmp_path / "steps"
    # 4 train frames, batch 1: 4 steps an epoch; max_steps 6 stops in the second epoch
    assert main(train_args(synth_root, out, "train.epochs=3", "train.batch_size=1", "train.max_steps=6",
                           "train.val_every=1")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [v["step"] for v in metrics["validations"]] == [4, 6]
    assert (out / "best.ckpt").is_file() and (out / "last.ckpt").is_file()


# --------------------------------------------------------------------------- disk full
def test_a_full_disk_during_training_keeps_the_last_checkpoint(run, synth_root, capsys, monkeypatch):
    import lightning as L

    before = {name: (run / name).read_bytes() for name in ("last.ckpt", "best.ckpt")}

    def save_checkpoint(self, path, weights_only=False, storage_options=None):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(L.Trainer, "save_checkpoint", save_checkpoint)
    line = one_error(capsys, train_args(synth_root, run, "train.epochs=2") + ["--resume", "auto"])
    assert re.search(rf"\[Errno 28\] No space left on device: '{run}/(best|last).ckpt'$", line), line
    assert {name: (run / name).read_bytes() for name in before} == before
    assert leftovers(run) == []


def test_a_full_disk_at_the_start_of_a_new_run_leaves_no_folder(synth_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "new" / "run"
    full_disk(monkeypatch, when=lambda path: "config" in path.name)
    line = one_error(capsys, train_args(synth_root, out))
    assert line.endswith(f"No space left on device: '{out}/config.yaml'"), line
    assert not out.exists()  # no empty folder for the next run to trip on


def _images(synth_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    for frame in ("000004", "000005"):
        (images / f"{frame}.png").symlink_to(synth_root / "training" / "image_2" / f"{frame}.png")
    return images, synth_root / "training" / "calib" / "000004.txt"


def test_predict_on_a_full_disk_writes_no_partial_result(trained, synth_root, tmp_path, capsys, monkeypatch):
    images, calib = _images(synth_root, tmp_path)
    full_disk(monkeypatch, when=lambda path: path.suffix == ".txt")  # the result files, not the output mark
    out = tmp_path / "pred"
    line = one_error(capsys, ["predict", "--ckpt", str(trained / "last.ckpt"), "--images", str(images),
                              "--calib", str(calib), "--out", str(out), "--no-pictures"])
    assert line.endswith(f"[Errno 28] No space left on device: '{out / 'data' / '000004.txt'}'")
    assert not list((out / "data").iterdir())  # no 0-byte result file that would read as "no detections"


def test_predict_does_not_claim_pictures_it_could_not_write(trained, synth_root, tmp_path, capsys, monkeypatch):
    images, calib = _images(synth_root, tmp_path)
    full_disk(monkeypatch, when=lambda path: path.suffix == ".png")
    out = tmp_path / "pred"
    code = main(["predict", "--ckpt", str(trained / "last.ckpt"), "--images", str(images), "--calib", str(calib),
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and "pictures to" not in captured.out
    assert captured.err.strip().endswith(f"No space left on device: '{out / 'pictures' / '000004.png'}'")
    assert leftovers(out) == [] and sorted(p.name for p in (out / "data").iterdir()) == ["000004.txt", "000005.txt"]


def test_export_on_a_full_disk_leaves_the_earlier_export(trained, tmp_path, capsys, monkeypatch):
    from monokd.serving import export

    out = tmp_path / "export"
    assert main(["export", "--ckpt", str(trained / "last.ckpt"), "--out", str(out), "--no-onnx"]) == 0
    capsys.readouterr()
    before = snapshot(out)

    def save_file(tensors, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr("safetensors.torch.save_file", save_file)
    monkeypatch.setattr(atomic, "_disk_full", lambda path: True)
    line = one_error(capsys, ["export", "--ckpt", str(trained / "last.ckpt"), "--out", str(out), "--no-onnx"])
    assert line.endswith(f"[Errno 28] No space left on device: '{out / 'student.safetensors'}'")
    assert snapshot(out) == before
    assert export is not None


# --------------------------------------------------------------------------- weight files
def _backbone(tmp_path: Path, kind: str) -> Path:
    from monokd.models.backbones.resnet import ResNet

    path = tmp_path / f"resnet_{kind}.pth"
    model = ResNet(34 if kind == "other" else 18, 1)
    if kind == "module":
        torch.save(model, path)
    elif kind == "text":  # e.g. an HTML error page saved under the weights' name
        path.write_text("<html>404 Not Found</html>\n")
    else:
        torch.save(model.state_dict(), path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:4000])
    return path


@pytest.mark.parametrize("kind, words", [
    ("truncated", "not a readable backbone weights file (model.backbone.weights), truncated"),
    ("module", "holds pickled Python objects (e.g. a whole nn.Module), not only tensors"),
    ("text", "not a readable backbone weights file (model.backbone.weights), truncated or of another format"),
    ("other", "not a torchvision ResNet-18 state dict")])
def test_backbone_weights_that_cannot_load_are_one_line(synth_root, tmp_path, capsys, kind, words):
    weights = _backbone(tmp_path, kind)
    line = one_error(capsys, train_args(synth_root, tmp_path / "run", f"model.backbone.weights={weights}"))
    assert f"{weights}: " in line and words in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["evaluate", "export", "predict"])
def test_a_truncated_ckpt_is_one_line(trained, synth_root, tmp_path, capsys, command):
    ckpt = tmp_path / "cut.ckpt"
    ckpt.write_bytes((trained / "last.ckpt").read_bytes()[:5000])
    images, calib = _images(synth_root, tmp_path)
    extra = {"evaluate": [], "export": ["--out", str(tmp_path / "x")],
             "predict": ["--images", str(images), "--calib", str(calib), "--out", str(tmp_path / "x")]}[command]
    line = one_error(capsys, [command, "--ckpt", str(ckpt), *extra])
    assert f"{ckpt}: not a readable monokd checkpoint" in line


# --------------------------------------------------------------------------- evaluate
@pytest.fixture
def results(synth_root, tmp_path) -> Path:
    """The ground truth of val frames 000004-000006 as result files (score 1): AP 100."""
    from monokd.data.kitti import read_label, write_label

    out = tmp_path / "results"
    for frame in ("000004", "000005", "000006"):
        objects = read_label(synth_root / "training" / "label_2" / f"{frame}.txt")
        for rank, o in enumerate(objects):
            o.score = 1.0 - 0.01 * rank  # distinct scores: ties would cut the precision curve
        write_label(out / f"{frame}.txt", objects)
    return out


def test_evaluate_refuses_missing_result_files(synth_root, results, capsys):
    gt = synth_root / "training" / "label_2"
    split = synth_root / "ImageSets" / "val.txt"  # 000004-000007
    line = one_error(capsys, ["evaluate", "--gt-dir", str(gt), "--det-dir", str(results), "--split", str(split)])
    assert f"{results}: no result file for 1 of the 4 frames scored (000007.txt)" in line
    assert "--missing-as-empty" in line
    assert main(["evaluate", "--gt-dir", str(gt), "--det-dir", str(results), "--split", str(split),
                 "--missing-as-empty"]) == 0


def test_evaluate_without_split_scores_the_result_folders_frames(synth_root, results, capsys, tmp_path):
    gt = synth_root / "training" / "label_2"
    out = tmp_path / "ap.json"
    assert main(["evaluate", "--gt-dir", str(gt), "--det-dir", str(results), "--classes", "Car",
                 "--min-height-scale", "0.3413", "--json", str(out)]) == 0
    assert f"scoring the 3 frames {results} holds result files for" in capsys.readouterr().out
    split = tmp_path / "three.txt"
    split.write_text("000004\n000005\n000006\n")
    assert main(["evaluate", "--gt-dir", str(gt), "--det-dir", str(results), "--classes", "Car",
                 "--min-height-scale", "0.3413", "--split", str(split), "--json", str(tmp_path / "split.json")]) == 0
    assert json.loads(out.read_text())["flat"] == json.loads((tmp_path / "split.json").read_text())["flat"]


def test_split_given_as_a_path_under_the_root(synth_root, results, capsys, monkeypatch):
    monkeypatch.chdir(synth_root)
    gt = synth_root / "training" / "label_2"
    assert main(["evaluate", "--gt-dir", str(gt), "--det-dir", str(results), "--split", "ImageSets/val.txt",
                 "--missing-as-empty"]) == 0
    from monokd.data.kitti import KittiPaths

    paths = KittiPaths(synth_root)
    assert paths.split("ImageSets/val.txt").resolve() == paths.split("val.txt") == paths.split("val")
    assert paths.split("ImageSets/nope.txt") == synth_root / "ImageSets" / "nope.txt"  # not val.txt.txt


# --------------------------------------------------------------------------- impossible data
def _edit_label(root: Path, frame: str, edit) -> tuple[Path, int]:
    label = root / "training" / "label_2" / f"{frame}.txt"
    lines = label.read_text().splitlines()
    number = next(i for i, text in enumerate(lines) if not text.startswith("DontCare"))
    fields = lines[number].split()
    edit(fields)
    lines[number] = " ".join(fields)
    label.write_text("\n".join(lines) + "\n")
    return label, number + 1


@pytest.mark.parametrize("edit, field, words", [
    (lambda f: f.__setitem__(slice(8, 11), ["0", "0", "0"]), "h", "zero dimension"),
    (lambda f: f.__setitem__(13, "-10.00"), "z", "behind the camera"),
    (lambda f: f.__setitem__(11, str(float(f[11]) + 40)), "location", "nowhere near its 2-D box")])
def test_impossible_labels_are_refused_before_the_model(root, tmp_path, capsys, no_model, edit, field, words):
    label, number = _edit_label(root, "000001", edit)
    line = one_error(capsys, train_args(root, tmp_path / "run"))
    assert f"{label}:{number}: field '{field}': " in line and words in line


def test_an_8_bit_depth_map_is_refused_before_the_model(root, tmp_path, capsys, no_model):
    import cv2

    depth = root / "training" / "depth_2" / "000002.png"
    cv2.imwrite(str(depth), np.full((128, 416), 7, np.uint8))
    line = one_error(capsys, train_args(root, tmp_path / "run", "data.depth_maps=depth_2"))
    assert line.endswith(f"{depth}: field 'dtype': an 8-bit image: KITTI depth PNGs are 16-bit (metres * 256)")


def test_an_empty_sweep_is_refused_before_the_model(root, tmp_path, capsys, no_model):
    velo = root / "training" / "velodyne" / "000003.bin"
    velo.write_bytes(b"")
    line = one_error(capsys, train_args(root, tmp_path / "run", "data.depth_maps=lidar"))
    assert line.endswith(f"{velo}: field 'points': an empty sweep (0 points): no depth to read from it")


def test_an_all_zero_depth_map_is_refused_where_it_is_read(root, tmp_path, capsys):
    from monokd.data.kitti import write_depth

    pred = tmp_path / "pred"
    for frame in ("000004", "000005", "000006", "000007"):
        write_depth(pred / f"{frame}.png", np.full((128, 416), 10.0))
    write_depth(pred / "000005.png", np.zeros((128, 416)))
    code = main(["depth", "evaluate", "--pred-dir", str(pred), "--root", str(root), "--split", "val"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("monokd depth evaluate: error: ")
    assert lines[0].endswith(f"{pred / '000005.png'}: field 'depth': every one of its 53248 pixels is 0 (no depth): "
                         "a map made from an empty sweep? (monokd depth-maps)")


def test_depth_maps_names_the_frames_it_could_not_fill(root, capsys):
    from monokd.data.kitti import read_velodyne, write_velodyne

    (root / "training" / "velodyne" / "000001.bin").write_bytes(b"")
    behind = root / "training" / "velodyne" / "000002.bin"
    points = read_velodyne(behind)
    points[:, 0] = -np.abs(points[:, 0]) - 1.0  # every point behind the car
    write_velodyne(behind, points)
    shutil.rmtree(root / "training" / "depth_2")
    code = main(["depth-maps", "--root", str(root)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in captured.err
    assert "2 of 8 frames could not be filled (000001, 000002); first: " in lines[0]
    assert "an empty sweep" in lines[0]
    written = sorted(p.stem for p in (root / "training" / "depth_2").glob("*.png"))
    assert written == ["000000", "000003", "000004", "000005", "000006", "000007"]
    assert leftovers(root / "training" / "depth_2") == []


def test_a_jpeg_named_png_is_read_as_a_jpeg(root):
    import cv2

    from monokd.data.kitti import read_image
    from monokd.errors import KittiFormatError

    image = root / "training" / "image_2" / "000001.png"
    ok, jpeg = cv2.imencode(".jpg", cv2.imread(str(image)))
    image.write_bytes(jpeg.tobytes())
    assert read_image(image).shape == (128, 416, 3)
    image.write_bytes(jpeg.tobytes()[:3000])
    with pytest.raises(KittiFormatError, match="truncated: no JPEG end marker"):
        read_image(image)
