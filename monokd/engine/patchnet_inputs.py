"""What the PatchNet demo story needs before its models train (``Story.prepare``).

PatchNet reads an estimated depth map and 2-D boxes per frame, so ``monokd demo --student
patchnet`` first builds both, each stage reused when finished:

1. the depth front-end: ``monokd depth train`` (configs/depth_synth.yaml, on ``train``
   only) -> ``OUT/depth``; ``monokd depth predict`` of train and val -> ``OUT/depth_pred``
   (resumable); ``monokd depth evaluate`` on val -> ``OUT/eval/depth.json``;
2. the 2-D boxes: the MonoDETR baseline (configs/monodetr_synth.yaml) -> ``OUT/boxes``, its
   val result files -> ``OUT/eval/boxes/data``.

Preset overrides: ``all`` then ``depth`` for the depth network; ``all``, ``monodetr`` and
``boxes`` for the box detector. Returns the ``--set`` items that point every PatchNet run at
these inputs (``data.depth_pred_dir``, ``data.proposals.results_dir``).
"""

from __future__ import annotations

from pathlib import Path

from monokd.engine import demo


def _sets(items) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def prepare_inputs(preset: dict, root: Path, out: Path, seed: int, extra_train=(), env: dict | None = None) -> list[str]:
    overrides = preset.get("overrides") or {}
    common = [f"data.root={root}", *(overrides.get("all") or [])]
    options = {"env": env} if env else {}
    depth_run, pred, scored = out / "depth", out / "depth_pred", out / "eval" / "depth.json"
    if not (depth_run / "metrics.json").is_file():  # written when the training has finished
        demo.run_command(["depth", "train", "--config", str(demo.CONFIG_DIR / "depth_synth.yaml"), "--out",
                          str(depth_run), "--resume", *_sets(common + list(overrides.get("depth") or []))],
                         "depth front-end", **options)
    demo.run_command(["depth", "predict", "--ckpt", str(depth_run / "last.ckpt"), "--split", "train", "--split", "val",
                      "--out", str(pred)], "depth predict", **options)
    if not scored.is_file():
        demo.run_command(["depth", "evaluate", "--pred-dir", str(pred), "--root", str(root), "--split", "val",
                          "--json", str(scored)], "depth evaluate", **options)
    boxes_run, boxes_eval = out / "boxes", out / "eval" / "boxes"
    demo.train(demo.CONFIG_DIR / "monodetr_synth.yaml", boxes_run,
               common + list(overrides.get("monodetr") or []) + list(overrides.get("boxes") or []), seed, extra_train,
               stage="2-D boxes (MonoDETR)", env=env)
    demo.evaluate(boxes_run, boxes_eval, "val", stage="evaluate 2-D boxes", ckpt=demo.last_checkpoint(boxes_run), env=env)
    return [f"data.depth_pred_dir={pred}", f"data.proposals.results_dir={boxes_eval / 'data'}"]
