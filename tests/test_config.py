"""The config loader and the declared sections (monokd.config, monokd.schema)."""

import ast
import copy
import os
from pathlib import Path

import pytest
import torch

from monokd.config import get, load_config, merge, set_key, setting
from monokd.errors import CheckpointMismatchError, ConfigError, MonokdWarning
from tests.helpers import one_error

REPO = Path(__file__).resolve().parents[1]
TINY = {"model": {"name": "monodetr", "backbone": {"depth": 18}, "hidden_dim": 32, "dim_feedforward": 32,
                  "nheads": 2, "num_queries": 6, "enc_layers": 1, "dec_layers": 2},
        "data": {"classes": ["Car"], "input_size": [192, 64]}}


def test_merge_is_recursive_and_pure():
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    out = merge(base, {"a": {"b": 5}, "e": 3})
    assert out == {"a": {"b": 5, "c": 2}, "d": [1], "e": 3}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}


def test_base_files_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  hidden_dim: 256\n  depth_input: gt_object\ntrain:\n  epochs: 10\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n  epochs: 3\n")
    cfg = load_config(tmp_path / "child.yaml", ["model.depth_input=null", "train.lr=2e-4", "eval.classes=[Car]"])
    assert cfg["model"] == {"hidden_dim": 256, "depth_input": None}
    assert cfg["train"] == {"epochs": 3, "lr": 2e-4}
    assert get(cfg, "eval.classes") == ["Car"]
    assert get(cfg, "missing.key", "x") == "x"


def test_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key.path=value"):
        set_key({}, "no_equals_sign")
    with pytest.raises(ConfigError, match="'a' is not a section"):
        set_key({"a": 1}, "a.b=2")


BASE = """\
data:
  root: /kitti
  classes: [Car]
model:
  name: monodetr
  hidden_dim: 64
train:
  epochs: 2
"""


@pytest.mark.parametrize("child, line, key, near", [
    ("data:\n  augmnt:\n    flip_prob: 0.3\n", 3, "data.augmnt", 'augment'),
    ("data:\n  augment:\n    flip_probb: 0.3\n", 4, "data.augment.flip_probb", 'flip_prob'),
    ("data:\n  proposals: {train: gt, jiter: 0.2}\n", 3, "data.proposals.jiter", 'jitter'),
    ("train:\n  lr: 1.0e-3\n  lr_milstones: [3]\n", 4, "train.lr_milstones", 'lr_milestones'),
    ("eval:\n  batch_size: 2\n  anything: 1\n", 4, "eval.anything", None),
    ("trian:\n  epochs: 3\n", 2, "trian", 'train'),
    ("model:\n  hiden_dim: 32\n", 3, "model.hiden_dim", 'hidden_dim'),
    ("model:\n  decode: {topk: 5, treshold: 0.1}\n", 3, "model.decode.treshold", 'threshold'),
    ("loss:\n  aux: false\n  wieghts: {}\n", 4, "loss.wieghts", 'weights'),
    ("distill:\n  feature:\n    wieght: 2.0\n", 4, "distill.feature.wieght", 'weight'),
    ("distill:\n  method: takd\n  imd: {enabled: true, weigth: 1.0}\n", 4, "distill.imd.weigth", 'weight'),
])
def test_every_section_refuses_an_unknown_key_naming_file_line_and_key(tmp_path, child, line, key, near):
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / "child.yaml"
    path.write_text("_base_: base.yaml\n" + child)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: {key}: unknown "), message
    assert "\n" not in message
    # the nearest declared spelling, when one is near (difflib), before the known names
    hint = f"; did you mean {near!r}? known: " if near else "; known: "
    assert hint in message and message.count("did you mean") == (near is not None), message


def test_an_unknown_key_set_by_a_base_file_or_an_override_names_it(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE + "  lr_milstones: [3]\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'base.yaml'}:9: train.lr_milstones: unknown key"):
        load_config(tmp_path / "child.yaml")
    (tmp_path / "base.yaml").write_text(BASE)
    with pytest.raises(ConfigError, match=r"^--set data.augment.flip_prb=0.2: data.augment.flip_prb: unknown"):
        load_config(tmp_path / "child.yaml", ["data.augment.flip_prb=0.2"])


def test_values_outside_their_choices_and_of_the_wrong_kind_name_file_and_key(tmp_path):
    path = tmp_path / "r.yaml"
    for text, message in (("train:\n  lr_schedule: one_cycle\n", "r.yaml:2: train.lr_schedule: 'one_cycle' is not one of"),
                          ("data:\n  resize: squash\n", "r.yaml:2: data.resize: 'squash' is not one of"),
                          ("model:\n  name: monodetr\n  hidden_dim: wide\n", "r.yaml:3: model.hidden_dim: expected an integer")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(path)


@pytest.mark.parametrize("role, what", [("teacher", "config"), ("teacher", "ckpt")])
def test_the_flat_teacher_spelling_is_refused_naming_its_replacement(tmp_path, role, what):
    path = tmp_path / "r.yaml"
    path.write_text(f"distill:\n  method: add\n  {role}_{what}: t.yaml\n")
    with pytest.raises(ConfigError, match=rf"r.yaml:3: distill.{role}_{what}: no longer read; write distill.{role}.{what}$"):
        load_config(path)
    path.write_text(f"distill:\n  method: takd\n  ta_{what}: t.yaml\n")
    with pytest.raises(ConfigError, match=rf"distill.ta_{what}: no longer read; write distill.ta.{what}$"):
        load_config(path)


def test_paths_are_read_relative_to_the_file_that_names_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes" / "base").mkdir(parents=True)
    (tmp_path / "recipes" / "base" / "b.yaml").write_text(
        "data:\n  root: ../../kitti\n  proposals: {eval: results, results_dir: boxes}\n  unlabeled: {root: ../../raw}\n")
    (tmp_path / "recipes" / "r.yaml").write_text(
        "_base_: base/b.yaml\ndata:\n  depth_pred_dir: ../depth\n"
        "model:\n  name: monodetr\n  backbone: {weights: w/resnet.pt}\n"
        "distill:\n  teacher: {config: t.yaml, ckpt: /abs/t.ckpt}\n")
    cfg = load_config("recipes/r.yaml", ["data.proposals.results_dir=here"])
    assert cfg["data"]["root"] == "kitti" and cfg["data"]["unlabeled"]["root"] == "raw"  # set in recipes/base/
    assert cfg["data"]["depth_pred_dir"] == "depth"
    assert cfg["model"]["backbone"]["weights"] == os.path.join("recipes", "w", "resnet.pt")
    assert cfg["distill"]["teacher"] == {"config": os.path.join("recipes", "t.yaml"), "ckpt": "/abs/t.ckpt"}
    assert cfg["data"]["proposals"]["results_dir"] == "here"  # an override: the working directory's
    assert load_config(tmp_path / "recipes" / "r.yaml")["data"]["root"] == str(tmp_path / "kitti")


def test_a_path_found_only_from_the_working_directory_is_kept_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "teacher.yaml").write_text("model: {name: monodetr}\n")
    (tmp_path / "configs" / "r.yaml").write_text(
        "distill:\n  teacher: {config: configs/teacher.yaml}\ndata:\n  root: data/kitti\n")
    with pytest.warns(MonokdWarning, match=r"configs/r.yaml:2: distill.teacher.config: 'configs/teacher.yaml' is "
                                           r"read from the working directory; write it relative to configs/r.yaml "
                                           r"\('teacher.yaml'\)"):
        cfg = load_config("configs/r.yaml")
    assert cfg["distill"]["teacher"]["config"] == "configs/teacher.yaml"
    assert cfg["data"]["root"] == os.path.join("configs", "data", "kitti")  # found nowhere: the file's


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("demo_")))
def test_every_shipped_recipe_loads_and_names_its_paths_from_the_repository(path, monkeypatch, recwarn):
    monkeypatch.chdir(REPO)
    cfg = load_config(f"configs/{path}")
    root = get(cfg, "data.root")
    assert root is None or root.startswith("data/")
    for role in ("teacher", "ta"):
        ckpt = get(cfg, f"distill.{role}.ckpt")
        assert ckpt is None or (ckpt.startswith("runs/") and get(cfg, f"distill.{role}.config") is None)
    assert not [w for w in recwarn if issubclass(w.category, MonokdWarning)]


def test_the_engine_defaults_are_declared_once():
    """No library code reads a train/eval/data setting with a default of its own
    (``get(cfg, "train.lr", 1e-3)``): they come from monokd.schema through ``setting``."""
    inline = []
    for path in sorted((REPO / "monokd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "get" \
                    and len(node.args) == 3 and isinstance(node.args[1], ast.Constant) \
                    and str(node.args[1].value).split(".")[0] in ("train", "eval", "data"):
                inline.append(f"{path.relative_to(REPO)}:{node.lineno} {node.args[1].value}")
    assert not inline, inline


def test_train_lr_and_monitor_have_one_default_everywhere(tmp_path):
    from monokd.schema import TRAIN
    from monokd.training.module import DetectorModule
    from monokd.training.schedule import build_optimizer

    assert setting({}, "train.lr") == TRAIN.defaults["lr"] == 2e-4
    assert setting({"train": {"lr": 1e-3}}, "train.lr") == 1e-3
    assert build_optimizer(torch.nn.Linear(2, 2), {}).param_groups[0]["lr"] == 2e-4
    module = DetectorModule(copy.deepcopy(TINY))
    assert module.monitor_key == setting({}, "train.monitor") == "Car/3d/moderate/R40@0.70"
    assert setting({}, "eval.batch_size") is None and setting({}, "data.val_split") == "val"


# --------------------------------------------------------------------------- teachers from checkpoints


def _checkpoint(cfg: dict, path: Path) -> Path:
    from monokd.models import build_detector

    torch.manual_seed(0)
    model = build_detector(cfg)
    torch.save({"hyper_parameters": {"cfg": cfg}, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
               path)
    return path


def test_a_teacher_trained_with_an_override_loads_in_an_add_run(tmp_path):
    """The recipe's teacher has 32-wide FFNs; the run trained it with 64 (``--set model.dim_feedforward=64``)."""
    from monokd.training.checkpoint import build_model

    recipe = merge(TINY, {"model": {"depth_input": "gt_object"}})
    (tmp_path / "teacher.yaml").write_text(__import__("yaml").safe_dump(recipe))
    trained = merge(recipe, {"model": {"dim_feedforward": 64}})
    ckpt = _checkpoint(trained, tmp_path / "teacher.ckpt")
    student = merge(TINY, {"distill": {"method": "add", "teacher": {"ckpt": str(ckpt)},
                                       "feature": {"embed_dim": 16, "heads": 2}, "response": {"heads": 2}}})
    distiller = build_model(student)
    assert distiller.teacher.cfg["dim_feedforward"] == 64
    explicit = merge(student, {"distill": {"teacher": {"config": str(tmp_path / "teacher.yaml")}}})
    with pytest.raises(CheckpointMismatchError) as err:
        build_model(explicit)
    message = str(err.value)
    assert "distill.teacher.config" in message[:50] and "model.dim_feedforward" in message and "\n" not in message


def test_a_takd_ta_is_built_from_its_checkpoint(tmp_path):
    from monokd.training.checkpoint import build_teacher

    ckpt = _checkpoint(merge(TINY, {"model": {"hidden_dim": 64}}), tmp_path / "ta.ckpt")
    ta = build_teacher({"distill": {"method": "takd", "ta": {"ckpt": str(ckpt)}}}, "ta")
    assert ta.hidden_dim == 64 and not ta.training


def test_a_checkpoint_that_stored_the_flat_spelling_still_loads(tmp_path):
    from monokd.training.checkpoint import checkpoint_config, load_detector

    stored = merge(TINY, {"distill": {"method": "add", "teacher": {"ckpt": "t.ckpt"},
                                      "teacher_config": "runs/t/config.yaml", "teacher_ckpt": "t.ckpt"}})
    cfg = checkpoint_config({"hyper_parameters": {"cfg": stored}})
    assert cfg["distill"]["teacher"] == {"ckpt": "t.ckpt", "config": "runs/t/config.yaml"}
    assert "teacher_config" not in cfg["distill"] and "teacher_config" in stored["distill"]
    from monokd.models import build_detector

    model = build_detector(TINY)
    state = {f"model.student.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": {"cfg": stored}, "state_dict": state}, path)
    loaded, cfg = load_detector(path)
    assert cfg["distill"]["teacher"]["config"] == "runs/t/config.yaml"


def test_a_saved_config_reads_back_with_the_same_paths(tmp_path, monkeypatch):
    from monokd.config import save_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    cfg = {"data": {"root": "data", "classes": ["Car"]}, "model": {"name": "monodetr"},
           "distill": {"teacher": {"ckpt": "/abs/t.ckpt"}}}
    save_config(cfg, "runs/x/config.yaml")
    assert "root: ../../data" in (tmp_path / "runs" / "x" / "config.yaml").read_text()
    assert load_config("runs/x/config.yaml") == cfg


def test_an_override_of_a_stored_config_is_checked_and_named(tmp_path):
    from monokd.training.checkpoint import checkpoint_config

    stored = {"hyper_parameters": {"cfg": copy.deepcopy(TINY)}}
    cfg = checkpoint_config(stored, "m.ckpt", ["model.decode.threshold=0.1", "eval.batch_size=2"])
    assert cfg["model"]["decode"] == {"threshold": 0.1} and "decode" not in TINY["model"]
    with pytest.raises(ConfigError, match=r"^--set eval.btach_size=2: eval.btach_size: unknown key"):
        checkpoint_config(stored, "m.ckpt", ["eval.btach_size=2"])


def test_other_unknown_names_suggest_the_nearest_known_one():
    from monokd.data.checks import check_classes
    from monokd.errors import did_you_mean
    from monokd.geometry.grid import BEVGrid
    from monokd.models import build_detector
    from monokd.models.bev.backbone import backbone_config
    from monokd.models.monodetr.losses import build_criterion
    from monokd.pipeline.stories import story

    assert did_you_mean("lr_milstones", ["lr", "lr_milestones"]) == "did you mean 'lr_milestones'? "
    assert did_you_mean("car", ["Car", "Van"]) == "did you mean 'Car'? "  # case aside
    assert did_you_mean("anything", ["batch_size", "classes"]) == ""
    for call, text in (
            (lambda: build_detector({"model": {"name": "monodter"}}),
             "model.name: 'monodter' is not a known detector; did you mean 'monodetr'? known: "),
            (lambda: check_classes(["Car", "cyclist"], "data.classes"), "(did you mean 'Cyclist'? known: Car, "),
            (lambda: build_criterion({"weights": {"gou": 1.0}}, 2), "['gou']; did you mean 'giou'? known: "),
            (lambda: BEVGrid.from_config({"voxel_sizes": [1, 1, 1]}), "(did you mean 'voxel_size'? known: "),
            (lambda: backbone_config({"layer_num": [1]}, "b"), "(did you mean 'layer_nums'? known: "),
            (lambda: story("monodter"), "--student monodter: unknown (did you mean 'monodetr'? known: ")):
        with pytest.raises(ConfigError) as err:
            call()
        assert text in str(err.value), str(err.value)


@pytest.mark.parametrize("text, line, message", [
    ("model: 3\n", 1, "model: expected a mapping, got 3"),
    ("model:\n  name: [monodetr]\n", 2, "model.name: expected a name (text), got ['monodetr']"),
    ("distill:\n  method: [add]\n", 2, "distill.method: expected a name (text), got ['add']"),
])
def test_a_section_or_name_of_the_wrong_kind_names_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:{line}: {message}"


@pytest.mark.parametrize("item, message", [
    ("train.lr_milestones=3", "train.lr_milestones: expected a list of epochs (numbers >= 0, e.g. [90, 120]), got 3"),
    ("train.lr_milestones=[a]", "train.lr_milestones: expected a list of epochs"),
    ("train.moms=[0.95]", "train.moms: expected [high, low], two numbers in [0, 1)"),
])
def test_a_schedule_of_the_wrong_kind_is_one_line_before_the_run_writes(tmp_path, capsys, item, message):
    out = tmp_path / "run"
    line = one_error(capsys, ["train", "--config", "configs/monodetr_synth.yaml", "--out", str(out),
                              "--set", f"data.root={tmp_path}", "--set", item])
    assert line.startswith(f"monokd train: error: {message}"), line
    assert not out.exists()
