"""``monokd ablate``: the ADD ablation tables (or MonoTAKD's with ``--method takd``) over
seeds; the study itself is :mod:`monokd.pipeline.ablate`."""

from __future__ import annotations

from pathlib import Path

from monokd.pipeline.ablate import run_ablation
from monokd.pipeline.stages import exit_on_sigterm


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="synth",
                        help="a demo preset (quick, default, synth, caddn_synth: configs/demo_<name>.yaml) "
                             "or a YAML path")
    parser.add_argument("--method", default=None, help="add or takd (default: the preset's, else add)")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (preset seed, +1, ...)")
    parser.add_argument("--rows", default=None,
                        help="comma-separated rows or tables (teacher, baseline, F, F+SA, ..., table4, "
                             "table5, variants, pe, all); default teacher,table4,pe (quick: baseline,F+SA+R+CA); "
                             "--method takd has its own rows (student, +IMD, +CMRD, ..., full+GT: "
                             "monokd.distill.takd.distiller.PRESETS)")
    parser.add_argument("--out", default=None, help="runs folder (default runs/ablate/<preset>)")
    parser.add_argument("--results", default="benchmarks/results", help="where <method>_ablation.{json,md} go")
    parser.add_argument("--data", default=None, help="SynthKITTI root (default: the preset's, else OUT/data)")
    parser.add_argument("--devices", default=None, help="passed to monokd train (default: its own, auto)")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: write the results of the seeds whose every row has finished "
                             "(e.g. runs other processes are writing into the same --out)")


def run(args) -> int:
    method = getattr(args, "method", None)
    out = args.out or f"runs/ablate/{Path(args.preset).stem}" + (f"-{method}" if method and method != "add" else "")
    extra = ["--devices", str(args.devices)] if args.devices else []
    exit_on_sigterm()
    run_ablation(args.preset, args.seeds, out, args.results, args.rows, args.data, extra, method=method,
                 finished_only=getattr(args, "finished_only", False))
    return 0
