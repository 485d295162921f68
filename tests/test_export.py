"""`monokd export`: the student alone from a distilled checkpoint (fake detector)."""

import argparse

import numpy as np
import onnxruntime
import pytest
import torch
import yaml
from safetensors.torch import load_file

from monokd.distill import build_distiller
from monokd.commands import export as export_command
from monokd.errors import ConfigError
from monokd.outputs import MARK
from monokd.serving import export
from monokd.training.checkpoint import model_state, read_checkpoint, student_state
from tests.test_distill_fake import FakeDetector

torch.set_num_threads(1)

CFG = {"model": {"name": "fake"}, "data": {"input_size": [64, 32]},
       "distill": {"method": "add", "teacher": {"config": "t.yaml", "ckpt": "t.ckpt"},
                   "feature": {"depth_channels": 8, "embed_dim": 12, "heads": 4}, "response": {"heads": 4}}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    distiller = build_distiller(CFG, FakeDetector(), FakeDetector(depth_input=True))
    tmp = tmp_path_factory.mktemp("export")
    state = {"model." + k: v for k, v in distiller.state_dict().items()}
    ckpt = tmp / "distilled.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"cfg": CFG}, "epoch": 3, "global_step": 12}, ckpt)
    report = export.export_student(ckpt, tmp / "out", build=lambda cfg: FakeDetector())
    return distiller, tmp / "out", report


def test_exported_student_has_exactly_the_baseline_parameters(exported):
    distiller, out, report = exported
    baseline = FakeDetector().state_dict()
    tensors = load_file(str(out / "student.safetensors"))
    assert set(tensors) == set(baseline)
    assert report["tensors"] == len(baseline)
    for key, value in distiller.student.state_dict().items():
        assert torch.equal(tensors[key], value), key
    checkpoint = read_checkpoint(out / "student.ckpt")  # weights_only, as `monokd evaluate` reads it
    assert set(model_state(checkpoint)) == set(baseline)
    assert "distill" not in checkpoint["hyper_parameters"]["cfg"] and checkpoint["epoch"] == 3
    assert "distill" not in yaml.safe_load((out / "config.yaml").read_text())


def test_onnx_matches_pytorch(exported):
    distiller, out, report = exported
    assert report["onnx_max_abs_diff"] < 1e-4
    session = onnxruntime.InferenceSession(str(out / "student.onnx"), providers=["CPUExecutionProvider"])
    images, P2 = export.example_inputs(CFG, seed=7)  # not the tracing input
    names = [o.name for o in session.get_outputs()]
    assert names == ["pred_boxes", "pred_depth", "pred_logits"]
    assert [i.name for i in session.get_inputs()] == ["images", "P2"]
    P2[:, 1, 1] *= 2  # P2 is a live input, not a constant folded in at export
    got = session.run(names, {"images": images.numpy(), "P2": P2.numpy()})
    student = distiller.student.eval()
    with torch.no_grad():
        want = student({"images": images, "P2": P2})
    for name, value in zip(names, got):
        assert np.abs(value - want[name].numpy()).max() < 1e-4, name


def test_student_state_and_cli(tmp_path, monkeypatch):
    assert student_state({"student.a": 1, "feature_adapters.0.b": 2}) == {"a": 1}
    assert student_state({"a": 1}) == {"a": 1}  # a baseline checkpoint
    torch.manual_seed(1)
    model = FakeDetector()
    ckpt = tmp_path / "baseline.ckpt"
    cfg = {k: v for k, v in CFG.items() if k != "distill"}
    torch.save({"state_dict": {"model." + k: v for k, v in model.state_dict().items()},
                "hyper_parameters": {"cfg": cfg}}, ckpt)
    monkeypatch.setattr(export, "_default_build", lambda cfg: FakeDetector())
    parser = argparse.ArgumentParser()
    export_command.add_arguments(parser)
    assert export_command.run(parser.parse_args(["--ckpt", str(ckpt), "--out", str(tmp_path / "o"), "--no-onnx"])) == 0
    assert (tmp_path / "o" / "student.safetensors").is_file() and not (tmp_path / "o" / "student.onnx").exists()
    with pytest.raises(Exception, match="missing keys"):
        export.export_student(ckpt, tmp_path / "bad", build=lambda cfg: torch.nn.Linear(2, 2), onnx=False)


def test_every_file_has_the_umask_mode(exported):
    _, out, _ = exported
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert set(modes) == {"student.safetensors", "config.yaml", "student.ckpt", "student.onnx", "export.json", MARK}
    assert modes["student.safetensors"] == modes["student.ckpt"] == modes["config.yaml"]


def test_export_is_all_or_nothing(exported, tmp_path, monkeypatch):
    _, out, _ = exported
    ckpt = out.parent / "distilled.ckpt"

    def fail(*args, **kwargs):
        raise RuntimeError("onnx tracing failed")

    monkeypatch.setattr(export, "export_onnx", fail)
    fresh = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError, match="tracing"):
        export.export_student(ckpt, fresh, build=lambda cfg: FakeDetector())
    assert not (tmp_path / "new").exists()  # the folders it made are gone too
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds files `monokd export` did not write; .* --overwrite"):
        export.export_student(ckpt, kept, build=lambda cfg: FakeDetector())
    with pytest.raises(RuntimeError, match="tracing"):
        export.export_student(ckpt, kept, build=lambda cfg: FakeDetector(), overwrite=True)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]
    # a success replaces the whole export: no earlier student.onnx beside the new student
    (kept / "student.onnx").write_text("an earlier student")
    report = export.export_student(ckpt, kept, build=lambda cfg: FakeDetector(), onnx=False, overwrite=True)
    assert "onnx" not in report
    assert sorted(p.name for p in kept.iterdir()) == [MARK, "config.yaml", "export.json", "notes.txt",
                                                      "student.ckpt", "student.safetensors"]
    export.export_student(ckpt, kept, build=lambda cfg: FakeDetector(), onnx=False)  # now its own: rewritten
