"""MonoTAKD's Figures 1 and 4 from trained runs: the BEV features of the LiDAR teacher (F_T),
the TA (F_TA), their residual (F_T - F_TA, what CMRD distils), the student's own BEV feature
(F_S) and its predicted residual (F_res') on one val frame, side by side.

    python benchmarks/takd_bev_maps.py --student runs/takd/last.ckpt --teacher runs/lidar/last.ckpt \
        --ta runs/ta/last.ckpt [--frame 000003] [--out benchmarks/results/takd_bev_maps.png]

Each run is rebuilt from the config stored in its checkpoint; the frame is read with the
student's data config (points and depth_2 included) from its val split, without augmentation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.data.dataset import KittiDataset, collate  # noqa: E402
from monokd.training.checkpoint import load_detector  # noqa: E402
from monokd.pipeline.takd_figure import takd_bev_maps  # noqa: E402
from monokd.viz.bev_features import feature_panel  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", required=True, help="checkpoint of the MonoTAKD student run")
    parser.add_argument("--teacher", required=True, help="checkpoint of the LiDAR teacher run")
    parser.add_argument("--ta", required=True, help="checkpoint of the TA run")
    parser.add_argument("--frame", default=None, help="val frame id (default: the first)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "takd_bev_maps.png"))
    args = parser.parse_args(argv)
    student, cfg = load_detector(args.student)
    teacher, _ = load_detector(args.teacher)
    ta, _ = load_detector(args.ta)
    dataset = KittiDataset(None, cfg["data"].get("val_split", "val"), cfg, augment=False)
    index = dataset.ids.index(args.frame) if args.frame else 0
    batch = collate([dataset[index]])
    path = feature_panel(takd_bev_maps(student, teacher, ta, batch), args.out, title=f"frame {dataset.ids[index]}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
