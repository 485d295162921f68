"""``monokd predict --ckpt CKPT --images DIR --calib FILE_OR_DIR --out DIR [--config CFG]``:
run a checkpoint on images without labels. Writes OUT/data/<stem>.txt (KITTI result lines)
and OUT/pictures/<stem>.png (3-D boxes on the image and a bird's-eye view).

``--calib`` is one calib file for every image, or a directory of per-image calib files
named like the images (<stem>.txt). A calib file is KITTI's; a file holding only the
``P2:`` line is accepted too. The config is the one stored in the checkpoint unless
``--config`` is given; ``--set`` applies to whichever it is.

The pictures show every box the result files hold, i.e. every box the model decoded above its
own decode threshold (MonoDETR ``model.decode.threshold``, CaDDN / MonoTAKD
``model.anchor_head.score_threshold``, PatchNet ``model.decode.min_score``);
``--score-threshold`` hides weaker ones in the pictures only, and ``--set`` on the model's
key decodes weaker ones too. A detector that needs more than an image and its calib
(PatchNet: a depth map and 2-D boxes; a teacher fed ground truth; monokd/serving/servable.py)
is refused before anything is written, and so is an ``--out`` holding files predict did not
write (monokd.outputs; ``--overwrite`` writes into it): predict rewrites its own.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from torch.utils.data import DataLoader

from monokd.config import load_config
from monokd.data.dataset import collate
from monokd.data.image_folder import ImageFolder
from monokd.data.kitti import read_image, write_image
from monokd.training.checkpoint import checkpoint_config, load_detector, read_checkpoint
from monokd.training.inference import detect
from monokd.serving.servable import decode_threshold, unserved
from monokd.errors import ConfigError, MonokdWarning
from monokd.evaluation import write_results
from monokd.outputs import check_output, mark_output
from monokd.viz.draw import render_frame_picture


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoint (from monokd train or export)")
    parser.add_argument("--images", required=True, help="directory of images (.png, .jpg)")
    parser.add_argument("--calib", required=True, help="one calib file for all images, or a directory of <stem>.txt")
    parser.add_argument("--out", required=True, help="output directory (data/ results, pictures/)")
    parser.add_argument("--config", default=None, help="config (default: the one stored in the checkpoint)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--batch-size", type=int, default=1, help="images a batch (default 1)")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="hide weaker boxes in the pictures (default: none hidden, i.e. the model's own decode "
                             "threshold; to see weaker boxes lower that with --set, see docs/training.md)")
    parser.add_argument("--no-pictures", action="store_true", help="write the result files only")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out that holds files predict did not write (its own it rewrites)")


def shown(objects: list, score_threshold: float | None = None) -> list:
    """The detections a picture shows: all (None: the model's decode threshold already applied),
    else those scoring at least ``score_threshold`` (an object without a score is kept)."""
    if score_threshold is None:
        return list(objects)
    return [o for o in objects if o.score is None or o.score >= score_threshold]


def pictures_note(model, score_threshold: float | None = None) -> str:
    """Which boxes the pictures show, in words. Warns when ``score_threshold`` is below the
    model's decode threshold: it then hides nothing, the weaker boxes were never decoded."""
    decoded = decode_threshold(model)
    if score_threshold is None:
        return f"every box the model decoded ({decoded[0]} = {decoded[1]:g})" if decoded else "every decoded box"
    if decoded and score_threshold < decoded[1]:
        key, value = decoded
        warnings.warn(MonokdWarning(f"--score-threshold {score_threshold:g} is below the model's decode threshold "
                                    f"{key} = {value:g}: no weaker box was decoded; to see them, "
                                    f"--set {key}={score_threshold:g}"))
    return f"boxes scoring at least {score_threshold:g} (--score-threshold)"


def draw_pictures(dataset: ImageFolder, detections: dict, out: Path, score_threshold: float | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for path, calib in zip(dataset.paths, dataset.calib_files):
        preds = shown(detections.get(path.stem, []), score_threshold)
        picture = render_frame_picture(read_image(path), dataset._P2[calib], None, preds, title=path.stem)
        write_image(out / f"{path.stem}.png", picture)
    return len(dataset.paths)


def predict(args: argparse.Namespace) -> int:
    check_output(args.out, "predict", args.overwrite)
    checkpoint = read_checkpoint(args.ckpt)
    # --set: on --config, else on the checkpoint's own config
    cfg = load_config(args.config, args.set) if args.config else checkpoint_config(checkpoint, args.ckpt, args.set)
    dataset = ImageFolder(args.images, args.calib, cfg)  # the inputs checked before the model is built
    model, cfg = load_detector(args.ckpt, cfg, checkpoint=checkpoint)
    if unserved(model, cfg):  # before anything is written
        raise ConfigError(f"{args.ckpt}: {unserved(model, cfg)}; predict on new images is not supported for it "
                          f"yet: use `monokd evaluate --ckpt {args.ckpt} --split SPLIT --out DIR` on a KITTI-layout "
                          "folder (--set data.root=...)")
    note = None if args.no_pictures else pictures_note(model, args.score_threshold)  # warns before the run
    out = Path(args.out)
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate)
    detections = detect(model, loader, progress=sys.stdout.isatty())
    mark_output(out, "predict")
    write_results(out / "data", detections)
    print(f"wrote {len(detections)} result files to {out / 'data'}")
    if not args.no_pictures:
        count = draw_pictures(dataset, detections, out / "pictures", args.score_threshold)
        print(f"wrote {count} pictures to {out / 'pictures'}: {note}")
    return 0


def run(args: argparse.Namespace) -> int:
    return predict(args)  # errors: monokd.cli prints them as one line
