"""The ``monokd`` command. Each subcommand lives in the module named below, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "synth": ("monokd.data.synth.cli", "write a synthetic dataset in the KITTI layout"),
    "show": ("monokd.viz.show", "draw frames with 3-D boxes and a bird's-eye view"),
    "evaluate": ("monokd.evaluation.cli", "KITTI AP of result files, or of a checkpoint"),
    "train": ("monokd.engine.train", "train a detector, a teacher or a distilled student"),
    "predict": ("monokd.engine.predict", "run a checkpoint on images; results and pictures"),
    "export": ("monokd.engine.export", "write the student alone (safetensors, ONNX)"),
    "demo": ("monokd.engine.demo", "SynthKITTI -> teacher, baseline, ADD -> report"),
    "ablate": ("monokd.engine.ablate", "the ADD ablation tables over seeds"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="monokd", description="monokd: depth-knowledge distillation for monocular 3D detection")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is None or not module_name.startswith(err.name):
                raise
            continue  # that command is not part of this build yet
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
