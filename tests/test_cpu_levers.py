"""benchmarks/cpu_levers.py: the variants each lever compares, their speed-ups, and one real
worker (a distiller's frozen teacher narrowed with the student)."""

from __future__ import annotations

import argparse

import pytest

from tests.helpers import benchmark_module


def test_each_lever_compares_its_variants(monkeypatch, tmp_path):
    with benchmark_module("cpu_levers") as levers:
        seen = []

        def fake(model, root, args, width, threads=1, malloc="kept", wait="spin"):
            seen.append((width, threads, malloc, wait))
            step = {64: 0.4, 32: 0.2}[width] * (1.25 if malloc == "default" else 1.0)
            step /= {"spin": 1.6, "passive": 1.1, "spin_10000": 1.5}[wait] if threads == 2 else 1.0
            return {"step_s": step}

        monkeypatch.setattr(levers, "run_worker", fake)
        args = argparse.Namespace(widths=[64, 32], narrow=32)
        row = levers.measure("monodetr", tmp_path, args)
    assert seen == [(64, 1, "kept", "spin"), (32, 1, "kept", "spin"), (32, 1, "default", "spin"),
                    (32, 2, "kept", "spin"), (32, 2, "kept", "passive"), (32, 2, "kept", "spin_10000")]
    assert row["widths_speedup"] == {"64": 1.0, "32": 2.0}
    assert row["allocator_speedup"] == 1.25
    assert row["two_threads_speedup"] == {"2_spin": 1.6, "2_passive": 1.1, "2_spin_10000": 1.5}
    assert levers.stage_widths(32) == [32, 64, 128, 256]
    assert levers.size("320x96") == (320, 96)


def test_a_worker_narrows_the_student_and_its_frozen_teacher(tmp_path):
    with benchmark_module("cpu_levers") as levers:
        from monokd.data.synth import generate

        root = generate(tmp_path / "synth", num_train=2, num_val=1, seed=0, width=160, height=64)
        args = argparse.Namespace(steps=1, size=(128, 64), batch_size=2, fp32=True)
        row = levers.run_worker("add_monodetr", root, args, width=8, malloc="default")
    assert row["width"] == 8 and row["threads"] == 1 and row["allocator_kept"] is False
    assert row["step_s"] > 0 and row["minor_faults"] >= 0 and row["user_s"] > 0


def test_an_unknown_model_is_refused(capsys):
    with benchmark_module("cpu_levers") as levers:
        with pytest.raises(SystemExit):
            levers.main(["--models", "monodetr,nope", "--quick"])
    assert "unknown nope" in capsys.readouterr().err
    with benchmark_module("cpu_levers") as levers:
        with pytest.raises(SystemExit):
            levers.main(["--models", "lidar_teacher", "--quick"])
    assert "unknown lidar_teacher (known, the models with a ResNet trunk: monodetr," in capsys.readouterr().err
