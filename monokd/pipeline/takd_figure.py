"""MonoTAKD's BEV feature figure in the demo report (the paper's Figures 1 and 4): the LiDAR
teacher's F_T, the TA's F_TA, their residual and the student's F_S on one val frame
(``Story.figure`` of the caddn + takd story)."""

from __future__ import annotations

from pathlib import Path

from monokd.pipeline.pictures import pick_frames
from monokd.pipeline.stages import last_checkpoint


def takd_bev_maps(student, teacher, ta, batch: dict) -> dict:
    """MonoTAKD's BEV features of the first frame of ``batch``: F_T, F_TA, F_T - F_TA, the
    student's F_S and (if it has the branch) its predicted residual, each (C, NY, NX)."""
    import torch

    from monokd.models.contract import SIGNALS

    with torch.no_grad():
        f_t = teacher.bev_features(batch)["bev"][0]
        f_ta = ta.bev_features(batch)["bev"][0]
        signals = student(batch, signals={"bev", "residual"})[SIGNALS]
    maps = {"LiDAR teacher F_T": f_t, "TA F_TA": f_ta, "residual F_T - F_TA": f_t - f_ta,
            "student F_S": signals.bev[0]}
    if signals.residual is not None:
        maps["student's residual F_res'"] = signals.residual[0]
    return maps


def takd_bev_figure(root: str | Path, runs: dict, plot, out_dir: Path, frame: str | None = None) -> Path:
    """``out_dir/bev_features.png``: :func:`takd_bev_maps` of the story's MonoTAKD student, its
    teacher and TA (their last checkpoints) on ``frame`` (default: the val frame with most cars)."""
    from monokd.data.dataset import KittiDataset, collate
    from monokd.training.checkpoint import load_detector
    from monokd.viz.bev_features import feature_panel

    model = next(m for m in plot.models if m.ta)
    student, cfg = load_detector(last_checkpoint(runs[model.name]))
    teacher, _ = load_detector(last_checkpoint(runs[model.teacher]))
    ta, _ = load_detector(last_checkpoint(runs[model.ta]))
    frame = frame or pick_frames(root, 1)[0]
    dataset = KittiDataset(root, "val", cfg, augment=False)
    batch = collate([dataset[dataset.ids.index(frame)]])
    return feature_panel(takd_bev_maps(student, teacher, ta, batch), out_dir / "bev_features.png",
                         title=f"frame {frame}")


def bev_section(root: str | Path, runs: dict, plot, out_dir: Path) -> str:
    """The report's section on :func:`takd_bev_figure` (markdown, appended to the report); ""
    when no figure was drawn."""
    bev = takd_bev_figure(root, runs, plot, out_dir)
    if bev is None:
        return ""
    return (f"\n## BEV features of teacher, TA, residual and student (the paper's Figures 1 and 4)\n\n"
            f"![BEV features](figures/{bev.name})\n")
