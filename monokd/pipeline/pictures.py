"""The demo report's pictures: each model's top predictions beside the ground truth, on the
image and on a bird's-eye view, for the val frames with most cars."""

from __future__ import annotations

from pathlib import Path

from monokd.pipeline.stories import LABELS


def pick_frames(root: str | Path, count: int, split: str = "val") -> list[str]:
    """The ``count`` val frames with the most cars (ties: lowest id), so the pictures show
    something to compare."""
    from monokd.data.kitti import KittiPaths, read_label, read_split

    paths = KittiPaths(Path(root))
    ids = read_split(paths.split(split))
    cars = {i: sum(o.type == "Car" for o in read_label(paths.file("label_2", i))) for i in ids}
    return sorted(ids, key=lambda i: (-cars[i], i))[:count]


def result_file(eval_dir: str | Path, frame: str) -> Path | None:
    """The KITTI result file of one frame written by ``monokd evaluate --out eval_dir``."""
    found = sorted(Path(eval_dir).rglob(f"{frame}.txt"))
    return found[0] if found else None


PICTURES_TAG = "pictures' boxes only: "  # what a model's second evaluation prints its lines after
TOP_K_LEAST = 3  # the pictures show at least this many predictions per model
PICTURED_CLASS = "Car"  # the ground truth drawn: the class of the report's tables


def top_predictions(objects: list, k: int) -> list:
    """The ``k`` highest-scoring predictions (objects without a score count as 1)."""
    return sorted(objects, key=lambda o: -(1.0 if o.score is None else o.score))[:k]


def draw_pictures(root: str | Path, eval_dirs: dict[str, Path], out_dir: str | Path, count: int,
                  thresholds: dict[str, float | None] | None = None,
                  labels: dict[str, str] | None = None) -> list[Path]:
    """One PNG a frame: for each model its top predictions (red, each with its score) and the
    ground truth (green) on the image and on a bird's-eye view, side by side; every view of a
    frame shares one depth range so the columns compare. The ground truth drawn is the
    ``PICTURED_CLASS`` (Car), the class the report's tables score.

    The rule: each model's top k predictions by score, k = the frame's number of ground-truth
    cars (at least ``TOP_K_LEAST``), whatever their score, so that a short training that
    puts few boxes above its table's score threshold still shows where its best guesses are;
    each panel's title says how many of them reach that model's threshold (``thresholds``:
    model -> ``monokd.pipeline.report.table_threshold``, a model without one gets no count)."""
    from monokd.data.kitti import KittiPaths, read_calib, read_image, read_label
    from monokd.viz.bev import draw_bev
    from monokd.viz.draw import PRED_COLOR, bev_depth, draw_boxes_2d, draw_boxes_3d
    from monokd.viz.report import prediction_grid

    labels = labels or LABELS
    thresholds = thresholds or {}
    paths = KittiPaths(Path(root))
    written = []
    for frame in pick_frames(root, count):
        image = read_image(paths.file("image_2", frame))
        P2 = read_calib(paths.file("calib", frame)).P2
        # the class the report's tables score: another class's box, drawn alike, would read as a missed car
        gt = [o for o in read_label(paths.file("label_2", frame)) if o.type == PICTURED_CLASS]
        k = max(TOP_K_LEAST, len(gt))
        preds = {}
        for model, eval_dir in eval_dirs.items():
            found = result_file(eval_dir, frame)
            preds[model] = top_predictions(read_label(found) if found is not None else [], k)
        far = bev_depth(gt, *preds.values())
        panels = {}
        for model, objects in preds.items():
            drawn = draw_boxes_3d(draw_boxes_2d(image, gt), gt, P2)
            drawn = draw_boxes_3d(draw_boxes_2d(drawn, objects, PRED_COLOR), objects, P2, PRED_COLOR)
            bev = draw_bev(None, gt, objects, z_range=(0.0, far), height=max(image.shape[0], 360))
            header = f"{labels.get(model, model)}\ntop {len(objects)} by score"
            threshold = thresholds.get(model)
            if threshold is not None:
                passing = sum(o.score is None or o.score >= threshold for o in objects)
                header += f", {passing} >= {threshold:g} (the table's threshold)"
            panels[header] = (drawn, bev)
        written.append(prediction_grid(
            panels, Path(out_dir) / f"frame_{frame}.png",
            title=f"val frame {frame}: {PICTURED_CLASS} ground truth green ({len(gt)}), each model's top {k} "
                  "predictions red with their scores"))
    return written
