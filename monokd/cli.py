"""The ``monokd`` command. Each subcommand lives in the module named below, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches.

Only the chosen subcommand's module is imported, so ``monokd synth`` does not pay for
importing torch and Lightning.

One error path serves every subcommand (a new one gets it by being listed here): monokd's
own errors (:class:`monokd.errors.MonokdError`) and the file errors they wrap (``OSError``)
print one line, ``monokd <command>: error: <file>[:<line>]: field '<f>': <what>``, and exit
1; ``--debug`` (or ``MONOKD_DEBUG=1``) shows the traceback instead. A
:class:`monokd.errors.MonokdWarning` prints as ``monokd <command>: warning: <what>``.
See docs/errors.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from monokd.errors import MonokdError, MonokdWarning

COMMANDS = {
    "synth": ("monokd.commands.synth", "write a synthetic dataset in the KITTI layout"),
    "show": ("monokd.commands.show", "draw frames with 3-D boxes and a bird's-eye view"),
    "evaluate": ("monokd.commands.evaluate", "KITTI AP of result files, or of a checkpoint"),
    "train": ("monokd.commands.train", "train a detector, a teacher or a distilled student"),
    "predict": ("monokd.commands.predict", "run a checkpoint on images; results and pictures"),
    "export": ("monokd.commands.export", "write the student alone (safetensors, ONNX)"),
    "convert": ("monokd.commands.convert", "an official implementation's checkpoint -> a monokd checkpoint"),
    "demo": ("monokd.commands.demo", "SynthKITTI -> teacher, baseline, distilled student -> report "
             "(students monodetr, caddn, patchnet; methods add, takd)"),
    "ablate": ("monokd.commands.ablate", "the ablation tables over seeds (ADD, or MonoTAKD with --method takd)"),
    "depth-maps": ("monokd.commands.depth_maps", "KITTI depth_2 maps from the velodyne sweeps"),
    "gt-database": ("monokd.commands.gt_database", "the GT-sampling database of a LiDAR teacher's training split"),
    "depth": ("monokd.commands.depth", "the monocular depth front-end: train | predict | evaluate"),
    "fpointnet-boxes": ("monokd.commands.fpointnet_boxes", "F-PointNet's 2-D detections -> KITTI result files "
                        "(PatchNet's data.proposals)"),
}
_DEBUG_HELP = "show the full traceback of an error (also MONOKD_DEBUG=1)"


def one_line(text: object) -> str:
    """``text`` with its line breaks folded, so that an error is one line of the terminal."""
    return " ".join(str(text).split())


def error_text(err: BaseException) -> str:
    """The message of ``err`` as one line. An error re-raised from a DataLoader worker carries
    the worker's traceback in its text; only its last line, the original message, is kept."""
    text = str(err)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        head, sep, message = last.partition(": ")
        text = message if sep and type(err).__name__ in head else last
    return one_line(text)


def _show_warning(command: str, fallback):
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, MonokdWarning):
            print(f"monokd {command}: warning: {one_line(message)}", file=sys.stderr, flush=True)
        else:
            fallback(message, category, filename, lineno, file, line)
    return show


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="monokd", description="monokd: depth-knowledge distillation for monocular 3D detection")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            add_debug(command_parser)
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("MONOKD_DEBUG", "") not in ("", "0")
    return run_command(command_name(args), module.run, args, debug)


def add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on ``parser`` and on every sub-action's parser under it (``depth train``)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_parser in action.choices.values():
                add_debug(sub_parser)


def command_name(args: argparse.Namespace) -> str:
    """``depth train`` for a command with sub-actions (their parser's ``dest`` is
    ``<command>_command``), else the command's name."""
    action = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    return f"{args.command} {action}" if action else args.command


def run_command(command: str, run, args, debug: bool = False) -> int:
    """``run(args)`` with monokd's one error path (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", MonokdWarning)
        warnings.showwarning = _show_warning(command, warnings.showwarning)
        try:
            return int(run(args) or 0)
        except (MonokdError, OSError) as err:
            if debug:
                raise
            print(f"monokd {command}: error: {error_text(err)}", file=sys.stderr, flush=True)
            return 1


if __name__ == "__main__":
    sys.exit(main())
