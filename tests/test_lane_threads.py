"""The demo's threads: the available cores shared among a wave's trainings (a lone one gets
them all), the thread count reaching the child process, OpenMP's threads spinning briefly
before they sleep."""

from __future__ import annotations

import io
import sys

import pytest

from monokd.pipeline import demo, stages
from monokd.pipeline.lanes import Lanes
from tests.helpers import fake_commands, fake_root


@pytest.mark.parametrize("lanes, threads, cores, expected", [
    (1, None, 2, 2), (2, None, 2, 1), (3, None, 2, 1), (2, None, 8, 4), (3, None, 8, 2), (1, 3, 2, 3), (2, 1, 8, 1),
])
def test_lane_threads_share_the_cores(lanes, threads, cores, expected):
    assert stages.lane_threads(lanes, threads, cores) == expected


def test_thread_env_bounds_the_spinning_of_several_threads():
    assert stages.thread_env(1) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert stages.thread_env(2) == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "GOMP_SPINCOUNT": "10000"}


def test_the_thread_count_reaches_the_child(tmp_path):
    lines = []
    code = Lanes().run([sys.executable, "-c", "import os, torch; print('threads', torch.get_num_threads(), "
                        "os.environ['GOMP_SPINCOUNT'])"], tmp_path / "child.log", lines.append, stages.thread_env(2))
    assert code == 0 and "threads 2 10000" in [line.strip() for line in lines]


def test_the_pair_gets_one_core_each_and_the_lone_student_every_core(tmp_path, monkeypatch, capsys):
    root = fake_root(tmp_path / "data")
    (root / stages.SYNTH_MARKER).write_text("{}")
    calls, envs = [], {}
    fake = fake_commands(calls)

    def run(args, stage, **options):
        envs[stage] = options.get("env", {})
        fake(args, stage, **options)

    monkeypatch.setattr(stages, "run_command", run)
    monkeypatch.setattr(stages, "available_cores", lambda: 2)
    demo.run_demo(tmp_path / "out", "quick", data_root=root, stream=io.StringIO())
    threads = {stage: env.get("OMP_NUM_THREADS") for stage, env in envs.items()}
    assert threads["train teacher"] == threads["evaluate teacher"] == threads["train baseline"] == "1"
    assert threads["train add"] == threads["evaluate add"] == "2"
    banners = capsys.readouterr().out
    assert "train + evaluate teacher, baseline: side by side, 1 thread(s) each" in banners
    assert "train + evaluate add: 2 thread(s); logs in" in banners
    # an explicit --threads wins
    envs.clear()
    demo.run_demo(tmp_path / "again", "quick", data_root=root, stream=io.StringIO(), threads=1)
    assert {env.get("OMP_NUM_THREADS") for env in envs.values()} == {"1"}
