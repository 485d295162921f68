"""What the PatchNet demo story needs before its models train (``Story.prepare``).

PatchNet reads an estimated depth map and 2-D boxes per frame, so ``monokd demo --student
patchnet`` first builds both, in a stage of its own (``prepare``: its commands' output in
``OUT/logs/prepare.log``), each step reused when finished:

1. the depth front-end: ``monokd depth train`` (configs/depth_synth.yaml, on ``train``
   only) -> ``OUT/depth``; ``monokd depth predict`` of train and val -> ``OUT/depth_pred``
   (resumable); ``monokd depth evaluate`` on val -> ``OUT/eval/depth.json``;
2. the 2-D boxes: the MonoDETR baseline (configs/monodetr_synth.yaml) -> ``OUT/boxes``, its
   val result files -> ``OUT/eval/boxes/data``.

Preset overrides: ``all`` then ``depth`` for the depth network; ``all``, ``monodetr`` and
``boxes`` for the box detector. Returns the ``--set`` items that point every PatchNet run at
these inputs (``data.depth_pred_dir``, ``data.proposals.results_dir``). Where PatchNet is
evaluated on the box detector's boxes (``data.proposals.eval=results``, the recipes') and its
result files hold no box, the stage says so in one line, and so does the report
(:func:`report_inputs`: the depth front-end's val AbsRel / RMSE / delta1, the box detector's
2-D AP and box count, where PatchNet's evaluation boxes come from). A preset may evaluate
PatchNet on the GT 2-D boxes instead (``data.proposals.eval=gt``, the quick preset: a box
detector of a few steps finds nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

from monokd.pipeline import presets, stages

BOX_KEYS = tuple(f"Car/bbox/{level}/R40@0.70" for level in ("easy", "moderate", "hard"))  # the box detector's AP


def _say(lane, text: str, always: bool = False) -> None:
    """A line of the stage's own: on its lane's display, else (``always``) on stdout."""
    if lane is not None:
        lane.display.status(lane.name, text)
    elif always:
        print(text, flush=True)


def prepare_inputs(preset: dict, root: Path, out: Path, seed: int, extra_train=(), env: dict | None = None,
                   lane=None) -> list[str]:
    """Build the depth maps and 2-D boxes under ``out`` (each command through ``lane``, a
    ``monokd.pipeline.lanes.Lane``, when given); return the PatchNet runs' ``--set`` items."""
    overrides = preset.get("overrides") or {}
    common = [f"data.root={root}", *(overrides.get("all") or [])]
    options = {k: v for k, v in (("env", env), ("lane", lane)) if v}
    depth_run, pred, scored = out / "depth", out / "depth_pred", out / "eval" / "depth.json"
    if not stages.training_done(depth_run):
        _say(lane, f"depth front-end: training -> {depth_run}")
    stages.train(presets.CONFIG_DIR / "depth_synth.yaml", depth_run, common + list(overrides.get("depth") or []),
                 stage="depth front-end", command=("depth", "train"), **options)
    stages.run_command(["depth", "predict", "--ckpt", str(depth_run / "last.ckpt"), "--split", "train", "--split", "val",
                      "--out", str(pred)], "depth predict", **options)
    if not scored.is_file():
        _say(lane, f"depth front-end: evaluating its val maps -> {scored}")
        stages.run_command(["depth", "evaluate", "--pred-dir", str(pred), "--root", str(root), "--split", "val",
                          "--json", str(scored)], "depth evaluate", **options)
    boxes_run, boxes_eval = out / "boxes", out / "eval" / "boxes"
    if not stages.training_done(boxes_run):
        _say(lane, f"2-D box detector (MonoDETR): training -> {boxes_run}")
    stages.train(presets.CONFIG_DIR / "monodetr_synth.yaml", boxes_run,
               common + list(overrides.get("monodetr") or []) + list(overrides.get("boxes") or []), seed, extra_train,
               stage="2-D boxes (MonoDETR)", **options)
    if stages.evaluation_json(boxes_eval) is None:
        _say(lane, f"2-D box detector: evaluating on val -> {boxes_eval / 'data'}")
    stages.evaluate(boxes_run, boxes_eval, "val", stage="evaluate 2-D boxes", ckpt=stages.last_checkpoint(boxes_run),
                  **options)
    sets = [f"data.depth_pred_dir={pred}", f"data.proposals.results_dir={boxes_eval / 'data'}"]
    warning = no_box_warning(preset, root, sets)
    if warning:
        _say(lane, "warning: " + warning, always=True)
    return sets


def evaluation_proposals(preset: dict, root: Path, sets: list[str]) -> dict[str, dict]:
    """Each PatchNet model's ``data.proposals`` as its runs get them (its recipe, the preset's
    overrides, ``sets``)."""
    from monokd.config import load_config
    from monokd.data.proposals import proposal_config

    return {m.name: proposal_config(load_config(presets.recipe(preset, m.name),
                                                presets.stage_overrides(preset, m.name, root) + list(sets))
                                    ["data"].get("proposals"))
            for m in preset["story"].models}


def no_box_warning(preset: dict, root: Path, sets: list[str]) -> str | None:
    """The one line saying the folder PatchNet is evaluated on holds no 2-D box, or None
    (boxes there, or no model evaluated on result files)."""
    from monokd.data.proposals import count_result_boxes, no_box_message

    folders = {p["results_dir"] for p in evaluation_proposals(preset, root, sets).values() if p["eval"] == "results"}
    for folder in sorted(folders):
        boxes, files = count_result_boxes(folder, stop_at=1)
        if boxes == 0:
            return no_box_message(folder, files)
    return None


def report_inputs(preset: dict, root: Path, out: Path, sets: list[str]) -> list[str]:
    """The report's lines on PatchNet's inputs: the depth front-end's val metrics, the box
    detector's Car 2-D AP and box count, and which boxes the PatchNet evaluations read."""
    from monokd.data.proposals import count_result_boxes

    lines = ["**PatchNet's inputs** (they bound its numbers below):", "",
             "| input | measured on val |", "|---|---|"]
    scored = out / "eval" / "depth.json"
    if scored.is_file():
        depth = json.loads(scored.read_text())
        lines.append(f"| depth front-end (`{out / 'depth'}`, maps in `{out / 'depth_pred'}`) | AbsRel "
                     f"{depth.get('abs_rel', float('nan')):.3f}, RMSE {depth.get('rmse', float('nan')):.2f} m, "
                     f"delta1 {depth.get('delta1', float('nan')):.3f} ({depth.get('images', '?')} images) |")
    boxes_eval = out / "eval" / "boxes"
    if stages.evaluation_json(boxes_eval) is not None:
        flat = stages.read_flat(boxes_eval)
        count, files = count_result_boxes(boxes_eval / "data")
        lines.append(f"| 2-D box detector (MonoDETR, `{out / 'boxes'}`) | Car AP_2D@0.7 R40 easy / moderate / hard "
                     + " / ".join(f"{flat[k]:.2f}" if k in flat else "n/a" for k in BOX_KEYS)
                     + f"; {count} boxes in its {files} result files (`{boxes_eval / 'data'}`) |")
    lines.append("")
    sources = {name: p["eval"] for name, p in evaluation_proposals(preset, root, sets).items()}
    said = {"results": f"the box detector's boxes (`data.proposals.eval=results`, `{boxes_eval / 'data'}`)",
            "gt": "the ground truth's 2-D boxes (`data.proposals.eval=gt`, set by this preset: a box detector of a "
                  "few steps finds no car, which would leave PatchNet without a proposal; the box detector is "
                  "trained and scored all the same)",
            "gt_jitter": "jittered ground-truth 2-D boxes (`data.proposals.eval=gt_jitter`)"}
    if len(set(sources.values())) == 1:
        lines.append(f"Every PatchNet model is evaluated on {said[next(iter(sources.values()))]}.")
    else:
        lines.append("PatchNet's evaluation boxes: " + "; ".join(f"{name}: {said[s]}" for name, s in sources.items())
                     + ".")
    warning = no_box_warning(preset, root, sets)
    if warning:
        lines += ["", f"**Warning:** {warning}."]
    return lines
