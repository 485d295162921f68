"""The demo's threads: the available cores shared among a wave's trainings (a lone one gets
them all), the thread count reaching the child process, OpenMP's threads sleeping when idle."""

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


def test_thread_env_lets_several_threads_sleep():
    assert stages.thread_env(1) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert stages.thread_env(2) == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}


def test_the_thread_count_reaches_the_child(tmp_path):
    lines = []
    code = Lanes().run([sys.executable, "-c", "import os, torch; print('threads', torch.get_num_threads(), "
                        "os.environ['OMP_WAIT_POLICY'])"], tmp_path / "child.log", lines.append, stages.thread_env(2))
    assert code == 0 and "threads 2 PASSIVE" in [line.strip() for line in lines]


def test_the_lone_teacher_gets_every_core_and_the_pair_one_each(tmp_path, monkeypatch, capsys):
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
    assert threads["train teacher"] == threads["evaluate teacher"] == "2"
    assert threads["train baseline"] == threads["train add"] == threads["evaluate add"] == "1"
    banners = capsys.readouterr().out
    assert "2 thread(s); logs in" in banners
    assert "side by side, 1 thread(s) each" in banners
    # an explicit --threads wins
    envs.clear()
    demo.run_demo(tmp_path / "again", "quick", data_root=root, stream=io.StringIO(), threads=1)
    assert {env.get("OMP_NUM_THREADS") for env in envs.values()} == {"1"}
