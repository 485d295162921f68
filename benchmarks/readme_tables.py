"""The README's results tables, rendered from benchmarks/results/*.json (no training).

    python benchmarks/readme_tables.py                      # print the markdown
    python benchmarks/readme_tables.py --readme README.md   # rewrite its marked block

One table per student and method (:data:`SOURCES`; a results file that is not there is
skipped, a ``<stem>_short.json`` beside it gets its own table, marked short schedule): per
model n and mean ± sample std, then each paired difference to the study's reference (the
student alone) as mean ± std [95 % t-interval], at AP3D@0.7, AP_BEV@0.7, AP3D@0.5 and
AP_BEV@0.5 (Car, moderate, R40); an ablation's rows beside the paper's AP3D@0.7 moderate.
Under each table one sentence, computed from the intervals, says where the difference is
shown (the interval excludes zero) and where it is not.

``--readme`` replaces what lies between the lines ``<!-- results:begin -->`` and
``<!-- results:end -->`` (kept) and nothing else, written whole (monokd/atomic.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.atomic import write_text  # noqa: E402
from monokd.errors import ConfigError  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
METRICS = [f"Car/{kind}/moderate/R40@{iou}" for iou in ("0.70", "0.50") for kind in ("3d", "bev")]
NAMES = ["AP3D@0.7", "AP_BEV@0.7", "AP3D@0.5", "AP_BEV@0.5"]
# (title, results stem, schema, the reference every paired difference is taken against)
SOURCES = [
    ("ADD on MonoDETR", "add_seeds", "seeds", "baseline"),
    ("ADD on CaDDN", "add_seeds_caddn", "seeds", "baseline"),
    ("MonoTAKD on CaDDN", "takd_seeds", "seeds", "student"),
    ("ADD and MonoTAKD on one CaDDN student", "add_vs_takd", "versus", "student"),
    ("ADD on PatchNet", "add_seeds_patchnet", "seeds", "baseline"),
    ("ADD ablation on MonoDETR (Table 4, Table 5's PE rows)", "add_ablation", "ablation", "baseline"),
    ("MonoTAKD ablation on CaDDN", "takd_ablation", "ablation", "student"),
    ("Unlabeled frames: MonoTAKD and ADD on CaDDN", "unlabeled_study", "seeds", "takd"),
]
SHORT = "_short"
# the arms' names in the seed studies' JSON -> what the tables call them (others as they are)
LABELS = {"add": "ADD", "takd": "MonoTAKD", "student": "student alone", "lidar_teacher": "LiDAR teacher",
          "ta": "TA", "caddn_teacher": "ADD's teacher", "takd+U": "MonoTAKD + unlabeled frames",
          "add+U": "ADD + unlabeled frames"}


def mean_std(n: int, mean: dict, std: dict, key: str) -> str:
    """'m ± s' over n seeds; the one value for n = 1; '-' when the metric or every seed is missing."""
    if n == 0 or key not in mean:
        return "-"
    return f"{mean[key]:.2f}" if n == 1 else f"{mean[key]:.2f} ± {std[key]:.2f}"


def paired_cell(diff: dict | None) -> str:
    """'+m ± s [lo, hi]' of one paired difference (``monokd.pipeline.statistics.paired_differences``)."""
    if not diff:
        return "-"
    ci, n = diff.get("ci95"), len(diff.get("per_seed") or [])
    text = f"{diff['mean']:+.2f}" + (f" ± {diff['std']:.2f}" if n > 1 else "")
    return text + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")


def verdict(label: str, diff: dict) -> str | None:
    """One sentence: at which metrics the interval of ``label`` lies above zero (shown ahead),
    below it (shown behind) or includes it (not shown); None without any interval (one seed)."""
    groups: dict[str, list[str]] = {}
    for key, name in zip(METRICS, NAMES):
        ci = (diff.get(key) or {}).get("ci95")
        if ci is None:
            continue
        where = "shown ahead" if ci[0] > 0 else "shown behind" if ci[1] < 0 else "not shown (the interval includes zero)"
        groups.setdefault(where, []).append(name)
    if not groups:
        return None
    return f"{label}: " + "; ".join(f"{where} at {', '.join(names)}" for where, names in groups.items()) + "."


def sentences(verdicts: list[tuple[str, str | None]]) -> list[str]:
    """The table's sentences: one per difference with an interval, then one naming those with
    a single seed (no interval, nothing shown)."""
    out = [text for _, text in verdicts if text]
    alone = [label for label, text in verdicts if not text]
    if alone:
        out.append(f"One seed, no interval (nothing shown): {', '.join(alone)}.")
    return out


def _facts(doc: dict) -> str:
    """The caption's facts as recorded: val frames, precision, training arguments."""
    precision = doc.get("precision")
    if precision == "mixed":
        precision = f"MIXED {doc.get('precision_values')}"
    args = doc.get("train_args")
    if isinstance(args, dict):  # an ablation: per row; a comparison: per study
        args = "per row in the JSON" if "recipe" in str(args) else "; ".join(
            f"{k}: {' '.join(v) if v else 'as shipped'}" for k, v in args.items() if v is not None) or None
    elif isinstance(args, list):
        args = f"`{' '.join(args)}`" if args else "the recipes as shipped"
    return (f"{doc.get('val_frames', '?')} val frames, precision {precision or 'not recorded'}, "
            f"training arguments {args or 'not recorded'}")


def _table(rows: list[tuple[str, int, list[str]]], extra: str | None = None) -> list[str]:
    head = "| model | n | " + " | ".join(NAMES) + (f" | {extra}" if extra else "") + " |"
    rule = "|---|---:|" + "---:|" * (len(NAMES) + bool(extra))
    return [head, rule] + [f"| {label} | {n} | " + " | ".join(cells) + " |" for label, n, cells in rows]


def seeds_rows(doc: dict, reference: str) -> tuple[list, list[str]]:
    """(table rows, sentences) of a seed study's JSON: ``models`` then ``paired`` (arm -> metric)."""
    rows = [(_label(arm), m["n"], [mean_std(m["n"], m["mean"], m["std"], k) for k in METRICS])
            for arm, m in doc["models"].items()]
    verdicts = []
    for name, diff in (doc.get("paired") or {}).items():
        # "a_minus_b" (add_vs_takd), "a - b" (unlabeled_study), else "a" against the reference
        a, b = name.split("_minus_") if "_minus_" in name else name.split(" - ") if " - " in name else (name, reference)
        label = f"{_label(a)} - {_label(b)}"
        n = len(next(iter(diff.values()))["per_seed"]) if diff else 0
        rows.append((f"{label}, paired", n, [paired_cell(diff.get(k)) for k in METRICS]))
        verdicts.append((label, verdict(label, diff)))
    return rows, sentences(verdicts)


def _label(arm: str) -> str:
    return LABELS.get(arm, arm)


def ablation_rows(doc: dict, reference: str) -> tuple[list, list[str]]:
    """(table rows with the paper's column, sentences) of ``monokd ablate``'s JSON."""
    ref = next((r for r in doc["rows"] if r["name"] == doc.get("reference", reference)), None)
    rows, verdicts = [], []
    for row in doc["rows"]:
        cells = [mean_std(row["n"], row["mean"], row["std"], k) for k in METRICS]
        paper = row.get("paper_ap3d")
        base = (ref or {}).get("paper_ap3d")
        cells.append("-" if not paper else f"{paper[1]:.2f}" + (f" ({paper[1] - base[1]:+.2f})" if base and row is not ref else ""))
        rows.append((row["label"], row["n"], cells))
    for row in doc["rows"]:
        if row.get("paired"):
            label = f"{row['label']} - {ref['label'] if ref else reference}"
            rows.append((f"{label}, paired", row["n"], [paired_cell(row["paired"].get(k)) for k in METRICS] + ["-"]))
            verdicts.append((label, verdict(label, row["paired"])))
    return rows, sentences(verdicts)


def render(title: str, path: Path, schema: str, reference: str) -> str:
    """The markdown of one results file: heading, caption, table, sentences."""
    doc = json.loads(path.read_text())
    short = path.stem.endswith(SHORT)
    seeds = f"seeds {doc.get('seeds')}"
    if doc.get("partial"):
        seeds = f"partial study of the planned seeds {doc.get('planned_seeds')} (each row's n: its finished seeds)"
    if doc.get("preset"):  # an ablation: its sizing is the preset's
        seeds = f"preset `{Path(doc['preset']).stem}`, {seeds}"
    lines = [f"### {title}{' (short schedule)' if short else ''}", "",
             f"From [{path.name}]({_link(path)}): {seeds}, {_facts(doc)}. Car R40 moderate; mean ± sample std "
             "over n seeds; paired rows: mean ± std [95 % t-interval] of the per-seed differences.", ""]
    if doc.get("mismatched_runs"):
        lines += [f"**Warning**: runs trained with other settings than the preset's: {', '.join(doc['mismatched_runs'])}.", ""]
    if schema == "ablation":
        rows, said = ablation_rows(doc, reference)
        lines += _table(rows, "paper AP3D@0.7 mod. (Δ)")
    else:
        rows, said = seeds_rows(doc, reference)
        lines += _table(rows)
    return "\n".join(lines + [""] + [f"- {s}" for s in said]) + "\n"


def _link(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def render_all(results_dir: Path = RESULTS) -> str:
    """Every table of :data:`SOURCES` whose results file exists (the full schedule's, then the
    short one's), in that order."""
    blocks = []
    for title, stem, schema, reference in SOURCES:
        for path in (results_dir / f"{stem}.json", results_dir / f"{stem}{SHORT}.json"):
            if path.is_file():
                blocks.append(render(title, path, schema, reference))
    return "\n".join(blocks)


def replace_block(text: str, block: str, where: str = "README") -> str:
    """``text`` with the lines between the BEGIN and END markers replaced by ``block``.
    ConfigError unless each marker is there once, BEGIN first."""
    lines = text.split("\n")
    begins, ends = [i for i, l in enumerate(lines) if l.strip() == BEGIN], [i for i, l in enumerate(lines) if l.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise ConfigError(f"{where}: expected one line {BEGIN} and, after it, one line {END} "
                          f"(found {len(begins)} and {len(ends)})")
    return "\n".join(lines[:begins[0] + 1] + [block.rstrip("\n")] + lines[ends[0]:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(RESULTS), help="the folder of the results JSON files")
    parser.add_argument("--readme", default=None, help="rewrite the marked block of this file (e.g. README.md)")
    args = parser.parse_args(argv)
    block = render_all(Path(args.results))
    if args.readme:
        readme = Path(args.readme)
        write_text(readme, replace_block(readme.read_text(), block, str(readme)))
        print(f"wrote the results block of {readme}")
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
