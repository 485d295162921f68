"""benchmarks/precision_runs.py without training: the order of the runs, their folders and the
``--set`` items each gets (the precision the only difference between the two folders)."""

from __future__ import annotations

import pytest

from tests.helpers import benchmark_module


@pytest.fixture()
def recorded(monkeypatch):
    calls = []
    with benchmark_module("precision_runs") as module:
        stages = module.stages
        monkeypatch.setattr(stages, "train", lambda recipe, run, items, seed, **kw: calls.append(
            ("train", recipe.name, str(run), tuple(items), seed, kw.get("command", ("train",)))))
        monkeypatch.setattr(stages, "evaluate", lambda run, out, **kw: calls.append(("evaluate", str(run), str(out))))
        monkeypatch.setattr(stages, "run_command", lambda args, stage, **kw: calls.append(("command", tuple(args))))
        yield module, calls


def test_the_fp32_front_end_predicts_patchnet_maps_first(recorded, tmp_path):
    module, calls = recorded
    bf16, fp32, data = tmp_path / "b", tmp_path / "f", tmp_path / "data"
    module.main(["--models", "patchnet,depth", "--seeds", "1", "2", "--data", str(data), "--runs-bf16", str(bf16),
                 "--runs-fp32", str(fp32)])
    trains = [c for c in calls if c[0] == "train"]
    assert [(c[1], c[2]) for c in trains] == [
        ("depth_synth.yaml", f"{fp32}/seed1/depth"),
        ("patchnet_synth.yaml", f"{bf16}/seed1/patchnet"), ("patchnet_synth.yaml", f"{fp32}/seed1/patchnet"),
        ("patchnet_synth.yaml", f"{bf16}/seed2/patchnet"), ("patchnet_synth.yaml", f"{fp32}/seed2/patchnet"),
        ("depth_synth.yaml", f"{bf16}/seed1/depth"), ("depth_synth.yaml", f"{bf16}/seed2/depth"),
        ("depth_synth.yaml", f"{fp32}/seed2/depth")]
    assert trains[0][5] == ("depth", "train") and trains[0][4] == 1
    predict = calls[1][1]
    assert predict[:2] == ("depth", "predict") and predict[-1] == str(fp32 / "depth_pred")
    assert predict.count("--split") == 2  # train and val: PatchNet's maps
    later = [c[1] for c in calls if c[0] == "command" and c[1][:2] == ("depth", "predict")][1:]
    assert all(p.count("--split") == 1 and p[-1].endswith("/depth_pred") and "/seed" in p[-1] for p in later)
    patchnet_bf16, patchnet_fp32 = trains[1][3], trains[2][3]
    assert patchnet_bf16 == (f"data.root={data}", "train.num_workers=0", "train.precision=bf16-mixed",
                             f"data.depth_pred_dir={fp32 / 'depth_pred'}", "data.proposals.eval=gt")
    assert [i for i in patchnet_fp32 if "precision" not in i] == [i for i in patchnet_bf16 if "precision" not in i]
    assert ("evaluate", f"{fp32}/seed2/patchnet", f"{fp32}/seed2/eval/patchnet") in calls


def test_unknown_models_and_patchnet_without_fp32_are_refused(recorded, tmp_path):
    module, _ = recorded
    common = ["--data", str(tmp_path), "--runs-bf16", str(tmp_path / "b"), "--runs-fp32", str(tmp_path / "f")]
    with pytest.raises(SystemExit, match="unknown monodetr"):
        module.main(["--models", "monodetr", *common])
    with pytest.raises(SystemExit, match="keep 32"):
        module.main(["--models", "patchnet", "--precisions", "bf16-mixed", *common])
