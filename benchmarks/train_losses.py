"""The training losses of finished runs, early and late, side by side: what a distillation term
did to the detection losses (no training; reads each run's TensorBoard log).

    python benchmarks/train_losses.py RUN [RUN ...] [--tags center corner distill_feat]
                                      [--first 10] [--last 20] [--out benchmarks/results/NAME]

For every run and every logged ``train/<tag>``: the mean of its first ``--first`` and of its
last ``--last`` logged values (``train.log_every`` steps apart) and the number of values.
Writes NAME.json (``runs``: {run name: {tag: {first, last, n}}}) and NAME.md (one table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import write_report  # noqa: E402  (benchmarks/_results.py)


def logged_scalars(run: Path, prefix: str = "train/") -> dict[str, list[float]]:
    """Every scalar under ``prefix`` in the run's TensorBoard event files, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run.rglob("events.out.tfevents.*"))
    if not files:
        raise SystemExit(f"train_losses: {run}: no TensorBoard event file")
    series: dict[str, dict[int, float]] = {}
    for path in files:  # a resumed run writes one file per launch
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            if tag.startswith(prefix):
                series.setdefault(tag[len(prefix):], {}).update({e.step: e.value for e in events.Scalars(tag)})
    return {tag: [values[s] for s in sorted(values)] for tag, values in series.items()}


def summarise(values: list[float], first: int, last: int) -> dict:
    head, tail = values[:first], values[-last:]
    return {"first": sum(head) / len(head), "last": sum(tail) / len(tail), "n": len(values)}


def markdown(results: dict) -> str:
    tags = results["tags"]
    lines = [f"# Training losses: mean of the first {results['first']} and of the last {results['last']} logged "
             "values (first -> last)", "", "`python benchmarks/train_losses.py`", "",
             "| run | " + " | ".join(tags) + " |", "|---" * (len(tags) + 1) + "|"]
    for name, row in results["runs"].items():
        cells = [f"{row[t]['first']:.3f} -> {row[t]['last']:.3f}" if t in row else "-" for t in tags]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (monokd train --out)")
    parser.add_argument("--tags", nargs="+", default=None, help="train/<tag> to report (default: every loss)")
    parser.add_argument("--first", type=int, default=10)
    parser.add_argument("--last", type=int, default=20)
    parser.add_argument("--out", required=True, help="results path without suffix")
    args = parser.parse_args(argv)
    rows, seen = {}, []
    for run in map(Path, args.runs):
        scalars = logged_scalars(run)
        tags = args.tags or [t for t in scalars if t not in ("lr", "nonfinite_total")]
        rows[run.name] = {t: summarise(scalars[t], args.first, args.last) for t in tags if t in scalars}
        seen += [t for t in tags if t not in seen]
    results = {"first": args.first, "last": args.last, "tags": seen, "runs": rows,
               "run_dirs": [str(r) for r in args.runs]}
    write_report(results, markdown(results), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
