"""The ``monokd`` command. Each subcommand lives in the module named below, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches.

Only the chosen subcommand's module is imported, so ``monokd synth`` does not pay for
importing torch and Lightning.
"""

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
    "depth-maps": ("monokd.data.depth_maps", "KITTI depth_2 maps from the velodyne sweeps"),
    "depth": ("monokd.engine.depth", "the monocular depth front-end: train | predict | evaluate"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="monokd", description="monokd: depth-knowledge distillation for monocular 3D detection")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
    args = parser.parse_args(argv)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
