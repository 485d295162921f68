"""The leakage guard: the object devkit's mapping files and the refusal of unlabeled frames
that are, or share a drive with, the student's val frames."""

from __future__ import annotations

import warnings

import pytest

from monokd.data import leakage
from monokd.data.kitti import KittiFormatError
from monokd.data.raw import RawFrame
from monokd.errors import ConfigError, MonokdWarning

A = "2011_09_26_drive_0005_sync"
B = "2011_09_28_drive_0034_sync"
# mapping lines (1-based): 1 = A/10, 2 = B/5, 3 = A/40, 4 = B/77
MAPPING = [("2011_09_26", A, "0000000010"), ("2011_09_28", B, "0000000005"),
           ("2011_09_26", A, "0000000040"), ("2011_09_28", B, "0000000077")]
RAND = "3,1,4,2"  # object 000000 -> line 3 (A/40), 000001 -> A/10, 000002 -> B/77, 000003 -> B/5


@pytest.fixture
def mapping_dir(tmp_path):
    folder = tmp_path / "mapping"
    folder.mkdir()
    (folder / leakage.MAPPING).write_text("".join(" ".join(line) + "\n" for line in MAPPING))
    (folder / leakage.RAND).write_text(RAND + "\n")
    return folder


def test_object_ids_map_through_train_rand(mapping_dir):
    assert leakage.object_to_raw(mapping_dir) == {
        "000000": RawFrame(A, "0000000040"), "000001": RawFrame(A, "0000000010"),
        "000002": RawFrame(B, "0000000077"), "000003": RawFrame(B, "0000000005")}


def test_write_mapping_round_trips(tmp_path):
    frames = [RawFrame(A, "0000000001"), RawFrame(B, "0000000002"), RawFrame(A, "0000000003")]
    leakage.write_mapping(tmp_path, frames, [2, 3, 1])
    assert (tmp_path / leakage.RAND).read_text() == "2,3,1\n"
    assert leakage.object_to_raw(tmp_path) == {f"{i:06d}": f for i, f in enumerate(frames)}


def test_guard_refuses_a_val_frame_and_a_same_drive_neighbour(mapping_dir):
    val = ["000001"]  # A/10
    with pytest.raises(ConfigError, match=rf"1 unlabeled frames lie in drives .* 1 of them val frames themselves: "
                                          rf"{A} \(1 frames\)"):
        leakage.check_leakage([RawFrame(A, "0000000010")], val, mapping_dir)
    with pytest.raises(ConfigError, match=rf"2 unlabeled frames .* 0 of them val frames themselves: {A} \(2 frames\)"
                                          ".*allow_overlap=true"):
        leakage.check_leakage([RawFrame(A, "0000000011"), RawFrame(A, "0000000500"), RawFrame(B, "0000000006")],
                              val, mapping_dir)
    assert leakage.check_leakage([RawFrame(B, "0000000005"), RawFrame(B, "0000000006")], val, mapping_dir) == []


def test_guard_allows_with_the_switch_and_says_so(mapping_dir):
    with pytest.warns(MonokdWarning, match="allowed by data.unlabeled.allow_overlap"):
        notes = leakage.check_leakage([RawFrame(A, "0000000010"), RawFrame(A, "0000000011")], ["000001"],
                                      mapping_dir, allow_overlap=True)
    assert len(notes) == 1 and "2 unlabeled frames" in notes[0] and "1 of them val frames" in notes[0]


def test_overlap_names_drives_and_counts():
    overlap = leakage.find_overlap([RawFrame(A, "0000000001"), RawFrame(A, "0000000002"), RawFrame(B, "0000000002")],
                                   [RawFrame(A, "0000000002"), RawFrame(B, "0000000009")])
    assert overlap.val_frames == [RawFrame(A, "0000000002")] and len(overlap.same_drive) == 3
    assert overlap.drives == {A: 2, B: 1}
    assert f"{A} (2 frames), {B} (1 frames)" in overlap.describe("val")


def test_without_mapping_files_warns_once(tmp_path):
    frames = [RawFrame(A, "0000000010")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = leakage.check_leakage(frames, ["000001"], None, raw_root=tmp_path)
        second = leakage.check_leakage(frames, ["000001"], None, raw_root=tmp_path)
    shown = [w for w in caught if issubclass(w.category, MonokdWarning)]
    assert len(shown) == 1 and "cannot check" in str(shown[0].message)
    assert first == second and "cannot check" in first[0]


def test_mapping_dir_lookup(tmp_path, mapping_dir):
    assert leakage.find_mapping_dir(tmp_path, None) == mapping_dir  # <object root>/mapping
    assert leakage.find_mapping_dir(tmp_path / "elsewhere", None) is None
    with pytest.raises(ConfigError, match="data.unlabeled.mapping: .*train_mapping.txt not found"):
        leakage.find_mapping_dir(tmp_path, tmp_path / "elsewhere")


def test_a_val_frame_the_mapping_lacks_is_an_error(mapping_dir):
    with pytest.raises(KittiFormatError, match="train_rand.txt: maps 4 object frames; val frame 000007"):
        leakage.check_leakage([], ["000007"], mapping_dir)


@pytest.mark.parametrize("text, line, field, reason", [
    (f"2011_09_26 {A} 0000000010\n2011_09_26 {A}\n", 2, None, "expected '<date> <drive> <frame>'"),
    (f"2011_09_26 {A} 0000000010\n\n2011_09_26 {A} 0000000011\n", 2, None, "expected"),
    (f"2011_09_26 {A} 0000000010\n2011_09_27 {A} 0000000011\n", 2, "date", "does not match drive"),
    (f"2011_09_26 {A} 0000000010\n2011_09_26 drive_5 0000000011\n", 2, "drive", "not a raw drive name"),
    (f"2011_09_26 {A} 10x\n", 1, "frame", "not a frame number"),
])
def test_malformed_mapping_line_names_file_and_line(tmp_path, text, line, field, reason):
    path = tmp_path / leakage.MAPPING
    path.write_text(text)
    with pytest.raises(KittiFormatError, match=reason) as err:
        leakage.read_mapping(path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), line, field)


@pytest.mark.parametrize("text, field, reason", [
    ("1,2,x,3\n", "index 3", "not a 1-based line number: 'x'"),
    ("1,0\n", "index 2", "not a 1-based line number: '0'"),
    ("1,,2\n", "index 2", "not a 1-based line number: ''"),
    ("1,2,9\n", "index 3", "9 is past the mapping's 4 lines"),
])
def test_malformed_rand_names_file_line_and_index(tmp_path, text, field, reason):
    path = tmp_path / leakage.RAND
    path.write_text(text)
    with pytest.raises(KittiFormatError, match=reason) as err:
        leakage.read_rand(path, lines=4)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 1, field)


def test_rand_tolerates_a_trailing_comma(tmp_path):
    path = tmp_path / leakage.RAND
    path.write_text("3,1,2,\n")
    assert leakage.read_rand(path) == [3, 1, 2]
