"""``monokd demo``: SynthKITTI -> teacher, baseline and distilled student -> evaluation ->
``OUT/report.md``; the pipeline itself is :mod:`monokd.pipeline.demo`."""

from __future__ import annotations

from monokd.errors import ConfigError
from monokd.pipeline.demo import run_demo
from monokd.pipeline.stages import exit_on_sigterm
from monokd.pipeline.stories import DEFAULT_METHOD, DEFAULT_STUDENT, STORIES, default_student


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="default",
                        help="quick (a smoke run, ~2 min on 2 cores), default (< 15 min), synth, caddn_synth "
                             "(configs/demo_<name>.yaml), or a YAML path")
    parser.add_argument("--out", default="runs/demo", help="output folder (reused: finished stages are skipped)")
    parser.add_argument("--data", default=None,
                        help="SynthKITTI root (generated there if absent); default OUT/data/synthkitti")
    parser.add_argument("--student", default=None,
                        help=f"the student network (known: {', '.join(sorted({s for s, _ in STORIES}))}; "
                             f"default: the preset's, else the --method's only student (takd: {default_student('takd')}), "
                             f"else {DEFAULT_STUDENT})")
    parser.add_argument("--method", default=None,
                        help=f"the distillation method (known: {', '.join(sorted({m for _, m in STORIES}))}; "
                             f"default: the preset's, else {DEFAULT_METHOD})")
    parser.add_argument("--unlabeled", type=int, default=0, metavar="N",
                        help="also train the distilled student on N unlabeled frames (SynthKITTI raw drives, "
                             "data.unlabeled; docs/unlabeled.md); a method that needs labels on every frame is "
                             "refused (default 0: none)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of each training and evaluation (default: the available cores shared "
                             "among a wave's trainings: a lone training gets them all, two side by side one each)")


def run(args) -> int:
    exit_on_sigterm()
    if args.unlabeled < 0:
        raise ConfigError(f"--unlabeled {args.unlabeled}: a number of frames, >= 0")
    run_demo(args.out, args.preset, args.data, student=args.student, method=args.method, threads=args.threads,
             unlabeled=args.unlabeled)
    return 0
