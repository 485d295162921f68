"""No command writes over what it did not create (monokd.outputs): each command that writes an
output folder or file refuses a foreign one naming --overwrite, before reading its inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monokd.cli import main
from monokd.errors import ConfigError
from monokd.outputs import MARK, check_output, check_output_file, mark_output
from tests.helpers import one_error


def foreign(folder: Path, name: str = "mine.txt") -> Path:
    """A folder holding one file of the user's; returns that file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("the user's\n")
    return folder / name


def test_check_output_allows_new_empty_and_own_folders_only(tmp_path):
    check_output(tmp_path / "new", "predict")
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", "predict")
    mark_output(tmp_path / "own", "predict")
    (tmp_path / "own" / "000001.txt").write_text("")
    check_output(tmp_path / "own", "predict")
    with pytest.raises(ConfigError, match=r"^--out .*own: holds the output of `monokd predict`; give another "
                                          r"--out, or pass --overwrite to write over it$"):
        check_output(tmp_path / "own", "evaluate")
    foreign(tmp_path / "user")
    with pytest.raises(ConfigError, match=r"^--out .*user: holds files `monokd predict` did not write; .*--overwrite"):
        check_output(tmp_path / "user", "predict")
    check_output(tmp_path / "user", "predict", overwrite=True)
    (tmp_path / "user" / "index.json").write_text("{}")  # a command's own signature file
    check_output(tmp_path / "user", "gt-database", own="index.json")
    with pytest.raises(ConfigError, match="exists; give another --json, or pass --overwrite"):
        check_output_file(tmp_path / "user" / "mine.txt", flag="--json")
    check_output_file(tmp_path / "user" / "mine.txt", overwrite=True)


def test_fpointnet_boxes_replaces_its_own_folder_and_refuses_a_foreign_one(tmp_path, capsys):
    source = tmp_path / "rgb_detection_val.txt"
    source.write_text("x/000001.png 2 0.9 1 2 30 40\nx/000003.png 2 0.8 1 2 30 40\n")
    out = tmp_path / "boxes"
    assert main(["fpointnet-boxes", "--input", str(source), "--out", str(out)]) == 0
    source.write_text("x/000002.png 2 0.9 1 2 30 40\n")
    assert main(["fpointnet-boxes", "--input", str(source), "--out", str(out)]) == 0  # its own: replaced whole
    assert sorted(p.name for p in out.glob("*.txt")) == ["000002.txt"]
    mine = foreign(tmp_path / "user")
    line = one_error(capsys, ["fpointnet-boxes", "--input", str(source), "--out", str(mine.parent)])
    assert "did not write" in line and "--overwrite" in line and mine.read_text() == "the user's\n"
    assert main(["fpointnet-boxes", "--input", str(source), "--out", str(mine.parent), "--overwrite"]) == 0
    assert sorted(p.name for p in mine.parent.iterdir()) == [MARK, "000002.txt"]
    assert not list(tmp_path.glob(".user*")) and not list(tmp_path.glob(".boxes*"))  # no staging left


@pytest.mark.parametrize("argv, name", [
    (["predict", "--ckpt", "{missing}", "--images", "{missing}", "--calib", "{missing}", "--out", "{out}"], "000001.txt"),
    (["evaluate", "--ckpt", "{missing}", "--out", "{out}"], "report.txt"),
    (["export", "--ckpt", "{missing}", "--out", "{out}"], "config.yaml"),
    (["depth", "predict", "--ckpt", "{missing}", "--out", "{out}"], "000001.png"),
    (["show", "--root", "{missing}", "--out", "{out}"], "000001.png"),
    (["synth", "--out", "{out}", "--num-train", "1", "--num-val", "0"], "training/image_2/000000.png"),
])
def test_each_command_refuses_a_foreign_out_before_reading_its_inputs(tmp_path, capsys, argv, name):
    out = tmp_path / "out"
    mine = foreign(out / Path(name).parent, Path(name).name)
    argv = [a.format(missing=tmp_path / "missing", out=out) for a in argv]
    command = " ".join(argv[:2]) if argv[0] == "depth" else argv[0]
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"monokd {command}: error: --out {out}: holds files `monokd {command}` did not write; "
                     "give another --out, or pass --overwrite to write over it"], lines
    assert mine.read_text() == "the user's\n" and [p for p in out.rglob("*") if p.is_file()] == [mine]


def test_one_file_outputs_and_the_gt_database_refuse_what_is_there(tmp_path, capsys):
    mine = foreign(tmp_path, "metrics.json")
    line = one_error(capsys, ["evaluate", "--gt-dir", str(tmp_path), "--det-dir", str(tmp_path), "--json", str(mine)])
    assert f"--json {mine}: exists; give another --json, or pass --overwrite" in line
    assert main(["depth", "evaluate", "--pred-dir", str(tmp_path), "--root", str(tmp_path), "--json", str(mine)]) == 1
    assert f"monokd depth evaluate: error: --json {mine}: exists" in capsys.readouterr().err
    assert mine.read_text() == "the user's\n"
    other = foreign(tmp_path / "gt_database" / "train", "000000_Car_0.bin")  # e.g. OpenPCDet's
    line = one_error(capsys, ["gt-database", "--root", str(tmp_path)])
    assert f"{other.parent}: holds files `monokd gt-database` did not write; pass --overwrite" in line
    assert other.read_text() == "the user's\n"


def test_synth_rewrites_its_own_dataset(tmp_path):
    from monokd.data.synth import generate

    generate(tmp_path / "s", 1, 0, width=64, height=32)
    assert json.loads((tmp_path / "s" / MARK).read_text()) == {"command": "synth"}
    (tmp_path / "s" / ".monokd-synth.json").unlink()  # an interrupted run: the mark still says whose
    generate(tmp_path / "s", 1, 0, width=64, height=32)
