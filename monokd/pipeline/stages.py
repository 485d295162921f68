"""The stage runner shared by ``monokd demo``, ``monokd ablate`` and the benchmarks.

A stage runs a documented command (``monokd train``, ``monokd evaluate``, ``monokd depth
train``) in a subprocess, so the pipeline depends only on the commands' lines. A stage is done
when its output marker exists (a training: :data:`TRAIN_MARKER` and a checkpoint; an
evaluation: its JSON; SynthKITTI: :data:`SYNTH_MARKER` or its complete splits), so a rerun
skips finished stages and an interrupted training goes on with ``--resume auto``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from monokd.atomic import write_text
from monokd.errors import MonokdError
from monokd.timing import hms

SYNTH_MARKER = ".monokd-synth.json"
TRAIN_MARKER = ".monokd-train-done"


class StageError(MonokdError, RuntimeError):
    """A stage's command failed; the message names the stage and the command (the ``monokd``
    command prints it as its one ``error:`` line)."""


@dataclass
class Clock:
    """Prints stage banners with the elapsed time since the pipeline started."""

    prefix: str = "demo"
    start: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)

    def elapsed(self) -> str:
        return hms(int(time.monotonic() - self.start))

    def banner(self, index: int, total: int, name: str, text: str) -> None:
        print(f"\n=== [{self.prefix} {index}/{total}] {name}: {text} (elapsed {self.elapsed()}) ===", flush=True)


def find_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's best checkpoint (``best*.ckpt`` anywhere under the run), else ``last.ckpt``,
    else None."""
    run_dir = Path(run_dir)
    best = sorted(run_dir.rglob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    last = run_dir / "last.ckpt"
    return last if last.is_file() else None


def last_checkpoint(run_dir: str | Path) -> Path:
    """The run's ``last.ckpt`` (the demo reports each model at the end of its schedule, not
    at its best validation, which would pick on the val split it reports), else
    :func:`find_checkpoint`."""
    last = Path(run_dir) / "last.ckpt"
    return last if last.is_file() else find_checkpoint(run_dir)


def training_done(run_dir: str | Path) -> bool:
    """A training is finished when ``monokd train`` exited successfully (our marker
    ``TRAIN_MARKER``, written after it) and left a checkpoint. Neither ``metrics.json`` nor
    ``last.ckpt`` alone proves it: both are rewritten while the run goes on."""
    run_dir = Path(run_dir)
    return (run_dir / TRAIN_MARKER).is_file() and find_checkpoint(run_dir) is not None


def evaluation_json(eval_dir: str | Path) -> Path | None:
    """The evaluation's JSON (the one holding a ``flat`` dict) under ``eval_dir``, or None."""
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        return None
    for path in sorted(eval_dir.glob("*.json")):
        try:
            if isinstance(json.loads(path.read_text()).get("flat"), dict):
                return path
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            continue
    return None


def read_flat(eval_dir: str | Path) -> dict[str, float]:
    """The ``flat`` metrics (key -> AP percent) of a finished evaluation."""
    path = evaluation_json(eval_dir)
    if path is None:
        raise StageError(f"{eval_dir}: no evaluation JSON with a 'flat' dict")
    return {k: float(v) for k, v in json.loads(path.read_text())["flat"].items()}


def run_command(args: list[str], stage: str, env: dict | None = None, lane=None) -> None:
    """Run ``python -m monokd.cli ARGS``. Without ``lane`` its output (progress bars) goes to
    our terminal; with one (a ``monokd.pipeline.lanes.Lane``) to the lane's log and display."""
    command = [sys.executable, "-m", "monokd.cli", *args]
    if lane is not None:
        code = lane.run(command, env)
        if code != 0:
            raise StageError(f"stage {stage!r} failed (exit {code}): {' '.join(command)}\n"
                             f"its output: {lane.log}\n{lane.tail()}")
        return
    child = subprocess.Popen(command, env={**os.environ, **(env or {})})
    try:
        code = child.wait()
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM via run()): never leave a training running behind us;
        # its last.ckpt lets the next run resume.
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
        raise
    if code != 0:
        raise StageError(f"stage {stage!r} failed (exit {code}): {' '.join(command)}")


def _runner_options(env: dict | None, lane) -> dict:
    """Keyword arguments of ``run_command`` beyond (args, stage), only those given."""
    return {k: v for k, v in (("env", env), ("lane", lane)) if v is not None}


def train(config: str | Path, run_dir: str | Path, overrides: list[str], seed: int | None = None,
          extra: list[str] = (), stage: str = "train", env: dict | None = None, lane=None,
          command: tuple[str, ...] = ("train",)) -> Path:
    """Train unless done; return its :func:`last_checkpoint` (what a study evaluates and hands
    to a student: the end of the schedule, never a pick on val). Always ``--resume auto`` so an interrupted
    run continues from its ``last.ckpt``. ``command``: the training command (``monokd train``,
    or ``monokd depth train`` for the depth front-end: both train through the same engine)."""
    run_dir = Path(run_dir)
    if not training_done(run_dir):
        args = [*command, "--config", str(config), "--out", str(run_dir), "--resume", "auto"]
        if seed is not None:
            args += ["--seed", str(seed)]
        for item in overrides:
            args += ["--set", item]
        run_command(args + list(extra), stage, **_runner_options(env, lane))
        if find_checkpoint(run_dir) is None:
            raise StageError(f"stage {stage!r}: {run_dir} has no checkpoint after training")
        write_text(run_dir / TRAIN_MARKER, " ".join(args) + "\n")
    return last_checkpoint(run_dir)


def evaluate(run_dir: str | Path, eval_dir: str | Path, split: str = "val", extra: list[str] = (),
             stage: str = "evaluate", ckpt: str | Path | None = None, env: dict | None = None,
             lane=None) -> dict[str, float]:
    """Evaluate a finished run's checkpoint (``ckpt``, by default :func:`last_checkpoint`)
    with its own saved config, unless done."""
    run_dir, eval_dir = Path(run_dir), Path(eval_dir)
    if evaluation_json(eval_dir) is None:
        ckpt = ckpt or last_checkpoint(run_dir)
        if ckpt is None:
            raise StageError(f"stage {stage!r}: {run_dir} has no checkpoint")
        run_command(["evaluate", "--config", str(run_dir / "config.yaml"), "--ckpt", str(ckpt),
                     "--split", split, "--out", str(eval_dir), *extra], stage, **_runner_options(env, lane))
    return read_flat(eval_dir)


def synth_done(root: str | Path) -> bool:
    """SynthKITTI is there: our marker, or (a dataset made by ``monokd synth``) both split
    files with every listed val image present."""
    root = Path(root)
    if (root / SYNTH_MARKER).is_file():
        return True
    val, train_split = root / "ImageSets" / "val.txt", root / "ImageSets" / "train.txt"
    if not (val.is_file() and train_split.is_file()):
        return False
    ids = val.read_text().split()
    return bool(ids) and all((root / "training" / "image_2" / f"{i.zfill(6)}.png").is_file() for i in ids)


def ensure_synth(root: str | Path, num_train: int, num_val: int, seed: int = 0, width: int = 416,
                 height: int = 128, workers: int = 1, raw_drives: int = 0, raw_fresh: int = 0,
                 progress=None) -> Path:
    """Generate SynthKITTI at ``root`` unless it is already there; with ``raw_drives`` also
    its raw drives (``monokd synth --raw-drives``: the first holds the val frames, each has
    ``raw_fresh`` fresh frames); ``progress(done, total)`` after each labelled frame. A root
    made before without the raw drives asked for is a MonokdError (nothing is added to a
    dataset this run did not make)."""
    root = Path(root)
    if not synth_done(root):
        from monokd.data.synth import generate

        generate(root, num_train=num_train, num_val=num_val, seed=seed, width=width, height=height, workers=workers,
                 raw_drives=raw_drives, raw_fresh=raw_fresh, progress=progress)
        write_text(root / SYNTH_MARKER, json.dumps(
            {"num_train": num_train, "num_val": num_val, "seed": seed, "width": width, "height": height,
             "raw_drives": raw_drives, "raw_fresh": raw_fresh}))
    elif raw_drives and not (root / "raw" / "ImageSets" / "unlabeled.txt").is_file():
        raise MonokdError(f"{root}: SynthKITTI without raw drives (raw/ImageSets/unlabeled.txt); give a fresh --data "
                          "folder for a run with unlabeled frames")
    return root


def available_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


SPIN_COUNT = 10000  # busy-wait iterations before an idle OpenMP thread sleeps


def thread_env(threads: int) -> dict[str, str]:
    """The environment that gives a child process ``threads`` intra-op threads. Several
    threads spin only briefly between parallel regions before they sleep
    (``GOMP_SPINCOUNT=10000``, GNU OpenMP: PyTorch's Linux builds): spinning without bound
    stalls them on a machine whose cores are busy with other work (a 2-thread MonoDETR step
    measured at 5-25 s against 0.6 s on one thread), while sleeping at once
    (``OMP_WAIT_POLICY=PASSIVE``) costs a lone training on idle cores most of its second
    thread (``benchmarks/cpu_levers.py``)."""
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if threads > 1:
        env["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return env


def lane_threads(lanes: int, threads: int | None = None, cores: int | None = None) -> int:
    """Threads of each of ``lanes`` trainings run side by side: ``threads`` when given, else
    the ``cores`` (default: :func:`available_cores`) shared evenly, at least one each (a lone
    training gets them all, two on two cores one each)."""
    if threads:
        return max(int(threads), 1)
    cores = available_cores() if cores is None else cores
    return max(cores // max(lanes, 1), 1)


def process_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its children that have ended."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``run_command`` stops its child first."""
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
