"""``monokd ablate``: the ADD ablations (the paper's Table 4 and the PE rows of Table 5), or
with ``--method takd`` MonoTAKD's component ablation, over seeds, as mean +- std per row.

Every seed trains one GT-depth teacher; each row is the ADD recipe with the row's switches
(``monokd.distill.add.PRESETS``) set, trained from that teacher, then evaluated on val. Rows
whose overrides coincide (F+SA and "SA w/ GT PE") share one run. Runs live under
``OUT/seed<k>/<row>/`` and are reused on a rerun (the demo's stage markers). Results:
``RESULTS/add_ablation.json`` and ``RESULTS/add_ablation.md``, built from the run folders
alone (:func:`collect`), so a rerun with the same ``OUT`` regenerates them without training.

Every row is paired with the baseline (the first row without distillation) at the same seeds:
per metric of :data:`SUMMARY_KEYS` the ``mean``, ``std``, ``per_seed`` differences and their 95 %
t-interval ``ci95`` (``monokd.pipeline.statistics.paired_differences``). The JSON says what the
runs recorded (``monokd.pipeline.run_record``): ``precision`` (each run's config.yaml, or its
command's ``--precision``), ``val_frames`` (the evaluations' frame count), and what this
preset asks (``train_args``: recipe, ``--set`` items, extra arguments per row); a run whose
recorded ``--set`` items differ from the preset's is listed under ``mismatched_runs``.

A seed's runs are ``OUT/seed<seed>`` whichever process made them: studies split over
processes (presets whose ``seed`` differs, ``--seeds`` counted from it) into one ``OUT`` are
read together by a run over all their seeds (``--finished-only`` trains nothing and reports
the seeds whose every row is done).

The data size and recipes come from a demo preset (``configs/demo_<preset>.yaml``): ``quick``
(a smoke run), ``synth`` (the synth recipes as they are) and ``caddn_synth`` (ADD on CaDDN)
among them. A preset's ``rows`` key sets its default rows (CaDDN: no response rows).

MonoTAKD (``--method takd``, the demo's caddn + takd story): every seed trains the LiDAR
teacher and the TA (both rows too), then each row of ``monokd.distill.takd.distiller.PRESETS``
on the MonoTAKD recipe, distilled from both. Results: ``RESULTS/takd_ablation.{json,md}``.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from monokd.atomic import write_text
from monokd.errors import ConfigError
from monokd.pipeline import presets as demo_presets
from monokd.pipeline import run_record, stages
from monokd.pipeline.statistics import aggregate, paired_differences

TEACHER_ROW = "teacher"
METHODS = ("add", "takd")  # the methods whose distiller declares ABLATION (monokd.distill.<method>.distiller)
# The metrics of the markdown tables (every flat key is kept in the JSON).
SUMMARY_KEYS = [f"Car/{m}/moderate/R40@{iou}" for iou in ("0.70", "0.50") for m in ("3d", "bev")]
CI_METHOD = "95 % two-sided Student t-interval over the paired per-seed differences: mean -+ t(0.975, n-1) std / sqrt(n)"


def _distiller(method: str):
    if method not in METHODS:
        raise ConfigError(f"--method {method}: no ablation rows (known: {', '.join(METHODS)})")
    return importlib.import_module(f"monokd.distill.{method}.distiller")


def distill_rows(method: str = "add") -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, tuple]]:
    """(row -> overrides, table -> rows, row -> paper AP3D, the frozen models' included) from
    the named rows of the distiller of ``method`` (``monokd.distill.<method>.distiller``)."""
    distiller = _distiller(method)
    paper = {**ablation(method)["frozen_paper_ap3d"], **getattr(distiller, "PAPER_AP3D", {})}
    return dict(distiller.PRESETS), dict(distiller.TABLES), paper


def ablation(method: str = "add") -> dict:
    """What the distiller of ``method`` declares of its ablation report: ``title``, ``rows``
    (what they are, in words), ``labels`` (row -> label), ``frozen_paper_ap3d``,
    ``default_rows`` (demo preset -> rows)."""
    return _distiller(method).ABLATION


def resolve_rows(spec: str | None, preset: str, presets: Mapping[str, list[str]],
                 tables: Mapping[str, list[str]], frozen: Sequence[str] = (TEACHER_ROW,),
                 defaults: Mapping[str, list[str]] | None = None) -> list[str]:
    """Row names from ``--rows`` (comma-separated names or table names ``table4``,
    ``table5``, ``pe``, ``all``); by default the frozen models (the teacher), Table 4 and
    Table 5's PE rows (``tables["pe"]``), unless ``defaults`` (demo preset -> rows, the
    method's ``ABLATION["default_rows"]``) names the preset's. ``frozen``: the rows of the
    models the students learn from."""
    pe_rows = [r for r in tables.get("pe", []) if r in presets]
    if spec is None:
        if preset in (defaults or {}):
            return list(defaults[preset])
        spec = ",".join([*frozen, "table4"] + (["pe"] if pe_rows else []))
    groups = {**tables, "pe": pe_rows, "all": [*frozen, *tables.get("table4", []), *pe_rows]}
    rows: list[str] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        names = groups.get(token, [token])
        for name in names:
            if name not in frozen and name not in presets:
                raise ConfigError(f"--rows: unknown row {name!r} (rows: {', '.join([*frozen, *presets])}; "
                                  f"tables: {', '.join(groups)})")
            if name not in rows:
                rows.append(name)
    return rows


def run_names(rows: Sequence[str], presets: Mapping[str, list[str]],
              frozen: Sequence[str] = (TEACHER_ROW,)) -> dict[str, str]:
    """Row -> the folder of its run: rows with the same overrides (as a set) share the first
    one's folder."""
    seen: dict[tuple, str] = {}
    names = {}
    for row in rows:
        key = (row,) if row in frozen else tuple(sorted(presets[row]))
        names[row] = seen.setdefault(key, _folder(row))
    return names


def _folder(row: str) -> str:
    return row.replace("+", "_").replace(".", "p")


def _seeds_text(results: dict) -> str:
    seeds = results["seeds"]
    text = f"n = {len(seeds)} seed(s) {seeds}"
    if results.get("partial"):
        text += f" (partial: the seeds of {results['planned_seeds']} whose every row has finished)"
    return text


def _value_text(results: dict, what: str) -> str:
    value = results.get(what)
    if value == run_record.MIXED:
        return f"{what.replace('_', ' ')} MIXED {results.get(what + '_values')}"
    return f"{what.replace('_', ' ')} {value if value is not None else 'not recorded'}"


def sizing_line(results: dict) -> str:
    """The line saying how the table was made: the preset (sizing), frames, precision and n."""
    frames = results.get("val_frames")
    val = f"{frames} val frames" if isinstance(frames, int) else _value_text(results, "val_frames")
    return (f"Sizing: preset `{Path(results['preset']).stem}` ({results.get('preset_file', '-')}), "
            f"{results.get('train_frames', '?')} train / {val}; {_value_text(results, 'precision')}; "
            f"{_seeds_text(results)}.")


def _paper_moderate(row: dict, reference: dict | None) -> str:
    """The paper's AP3D@0.7 moderate of a row, with its difference to the paper's baseline."""
    paper = row.get("paper_ap3d")
    if not paper:
        return "-"
    base = (reference or {}).get("paper_ap3d")
    return f"{paper[1]:.2f}" + (f" ({paper[1] - base[1]:+.2f})" if base and row is not reference else "")


def paired_cell(diff: dict) -> str:
    """'+m ± s [lo, hi]' of one metric's paired difference (no interval below 2 seeds)."""
    ci = diff.get("ci95")
    text = f"{diff['mean']:+.2f}" + (f" ± {diff['std']:.2f}" if len(diff["per_seed"]) > 1 else "")
    return text + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")


def paired_table(results: dict) -> str:
    """Each row's paired difference to the baseline (mean ± std [95 % CI]) at the four moderate
    metrics, beside the paper's AP3D@0.7 moderate and its difference to the paper's baseline."""
    rows = results["rows"]
    reference = next((r for r in rows if r["name"] == results.get("reference")), None)
    if reference is None:
        return ""
    names = ["AP3D@0.7", "AP_BEV@0.7", "AP3D@0.5", "AP_BEV@0.5"]
    lines = [f"Paired by seed, row - {reference['label']} (moderate; mean ± sample std [95 % t-interval]):", "",
             "| row | n | " + " | ".join(f"Δ {n}" for n in names) + " | paper AP3D@0.7 mod. (Δ) |",
             "|---|---:|" + "---:|" * (len(names) + 1)]
    for row in rows:
        if row.get("paired"):
            cells = [paired_cell(row["paired"][k]) if k in row["paired"] else "-"
                     for k in results.get("summary_keys", SUMMARY_KEYS)]
        else:
            cells = ["-"] * len(names)
        lines.append(f"| {row['label']} | {row['n']} | " + " | ".join(cells) + f" | {_paper_moderate(row, reference)} |")
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    """The ablation tables (mean +- std over seeds) at IoU 0.7 and 0.5, with the paper's KITTI
    val AP3D (easy / mod. / hard at 0.7) beside each row where the paper has one, then every
    row's paired difference to the baseline; the sizing line says preset, precision and n."""
    from monokd.viz.report import metric_table

    rows = [(r["label"], {k: (r["mean"][k], r["std"][k]) for k in r["mean"]}) for r in results["rows"]]
    paper = {r["label"]: "/".join(f"{v:.2f}" for v in r["paper_ap3d"]) if r.get("paper_ap3d") else "-"
             for r in results["rows"]}
    seeds = results["seeds"]
    about = ablation(results.get("method", "add"))
    title, rows_text = about["title"], about["rows"]
    head = [f"# {title} ablation on preset `{Path(results['preset']).stem}`", "",
            f"Car AP (R40, %) on the val split, mean ± sample std over {len(seeds)} seed(s) {seeds}. "
            f"{rows_text}; the last column is the paper's "
            "KITTI val AP3D@0.7 easy/mod./hard (real KITTI, full recipe, for orientation only).", ""]
    if "precision" in results or "val_frames" in results:
        head += [sizing_line(results), ""]
    if results.get("mismatched_runs"):
        head += [f"**Warning**: runs trained with other settings than this preset's: "
                 f"{', '.join(results['mismatched_runs'])} (the JSON's `mismatched_runs`).", ""]
    tables = [metric_table(rows, iou, extra={"paper AP3D@0.7 (KITTI)": paper} if iou == 0.7 else None,
                           label="row") for iou in (0.7, 0.5)]
    paired = paired_table(results)
    return "\n".join(head) + "\n" + "\n".join(tables) + ("\n" + paired if paired else "")


@dataclass
class Plan:
    """What one ``monokd ablate`` invocation covers: the preset, the rows and their run folders,
    the seeds; the folder of row ``r`` at seed ``s`` is ``out/seed<s>/<folders[r]>``."""

    preset_name: str
    preset: dict
    method: str
    student: object  # the story's distilled model (monokd.pipeline.stories)
    frozen_models: list
    row_items: dict[str, list[str]]
    paper: dict[str, tuple]
    rows: list[str]
    folders: dict[str, str]
    out: Path
    root: Path
    seeds: list[int]
    extra_train: list[str] = field(default_factory=list)

    @property
    def frozen(self) -> list[str]:
        return [m.name for m in self.frozen_models]

    def run_dir(self, seed: int, row: str) -> Path:
        return self.out / f"seed{seed}" / self.folders[row]

    def eval_dir(self, seed: int, row: str) -> Path:
        return self.out / f"seed{seed}" / "eval" / self.folders[row]

    def recipe(self, row: str) -> Path:
        return demo_presets.recipe(self.preset, row if row in self.frozen else self.student.name)

    def overrides(self, row: str) -> list[str]:
        """The row's ``--set`` items but the frozen models' checkpoints: the preset's, then the row's switches."""
        if row in self.frozen:
            return demo_presets.stage_overrides(self.preset, row, self.root)
        return demo_presets.stage_overrides(self.preset, self.student.name, self.root) + list(self.row_items[row])

    def frozen_overrides(self, seed: int, row: str, ckpts: Mapping[str, Path]) -> list[str]:
        """The items pointing a distilled row at its seed's teacher (and TA) checkpoints."""
        if row in self.frozen or "distill=null" in self.row_items[row]:
            return []
        seed_dir = self.out / f"seed{seed}"
        items = demo_presets.teacher_overrides(seed_dir / self.student.teacher, ckpts[self.student.teacher])
        if self.student.ta:
            items += demo_presets.ta_overrides(seed_dir / self.student.ta, ckpts[self.student.ta])
        return items

    def reference(self) -> str | None:
        """The row every other is paired with: the first one without distillation (the baseline)."""
        return next((r for r in self.rows if r not in self.frozen and "distill=null" in self.row_items[r]), None)


def plan_ablation(preset_name: str, seeds: int, out: str | Path, rows_spec: str | None = None,
                  data_root: str | Path | None = None, extra_train: Sequence[str] = (),
                  seed_offset: int | None = None, method: str | None = None) -> Plan:
    """The :class:`Plan` of ``monokd ablate`` (nothing run): seeds ``preset seed + 0 .. seeds - 1``
    unless ``seed_offset`` starts them elsewhere."""
    preset = demo_presets.load_preset(preset_name, None, method)
    method, plot = preset["method"], preset["story"]
    student = next(m for m in plot.models if m.role == "distilled")  # the story's distilled model
    frozen_models = [plot.model(name) for name in (student.teacher, student.ta) if name]
    frozen = [m.name for m in frozen_models]
    row_items, tables, paper = distill_rows(method)
    rows = resolve_rows(rows_spec or preset.get("rows"), preset_name, row_items, tables, frozen,
                        ablation(method)["default_rows"])
    out = Path(out)
    root = Path(data_root or preset["data"].get("root") or out / "data" / "synthkitti")
    base_seed = int(preset.get("seed", 0)) if seed_offset is None else seed_offset
    return Plan(preset_name, preset, method, student, frozen_models, row_items, paper, rows,
                run_names(rows, row_items, frozen), out, root, [base_seed + k for k in range(seeds)],
                list(extra_train))


def train_rows(plan: Plan) -> None:
    """Train and evaluate every row at every seed, skipping finished runs (a rerun with the
    same ``out`` trains nothing that is done)."""
    data, rows = plan.preset["data"], plan.rows
    needs_teacher = any(r in plan.frozen or "distill=null" not in plan.row_items[r] for r in rows)
    student_folders = list(dict.fromkeys(plan.folders[r] for r in rows if r not in plan.frozen))
    clock = stages.Clock(prefix="ablate")
    total = 1 + len(plan.seeds) * (len(plan.frozen) * int(needs_teacher) + len(student_folders))
    step = 1
    clock.banner(step, total, "data", f"SynthKITTI at {plan.root}")
    stages.ensure_synth(plan.root, int(data["num_train"]), int(data["num_val"]), int(data.get("seed", 0)),
                        int(data.get("width", 416)), int(data.get("height", 128)), int(data.get("workers", 1)))
    for seed in plan.seeds:
        ckpts = {}
        for model in plan.frozen_models if needs_teacher else []:
            run_dir = plan.out / f"seed{seed}" / model.name
            step += 1
            clock.banner(step, total, f"seed {seed} {model.name}", f"-> {run_dir}")
            ckpts[model.name] = stages.train(plan.recipe(model.name), run_dir, plan.overrides(model.name), seed,
                                             plan.extra_train, stage=model.name)
            if model.name in rows:
                stages.evaluate(run_dir, plan.eval_dir(seed, model.name), stage=model.name)
        for folder in student_folders:
            row = next(r for r in rows if plan.folders[r] == folder)
            step += 1
            clock.banner(step, total, f"seed {seed} {row}", f"-> {plan.run_dir(seed, row)}")
            stages.train(plan.recipe(row), plan.run_dir(seed, row),
                         plan.overrides(row) + plan.frozen_overrides(seed, row, ckpts), seed, plan.extra_train, stage=row)
            stages.evaluate(plan.run_dir(seed, row), plan.eval_dir(seed, row), stage=row)
    print(f"\nablation: trained and evaluated (total {clock.elapsed()})", flush=True)


def _finished(plan: Plan, seed: int, row: str) -> bool:
    return stages.training_done(plan.run_dir(seed, row)) and stages.evaluation_json(plan.eval_dir(seed, row)) is not None


def _mismatches(plan: Plan, seed: int) -> dict[str, dict[str, list[str]]]:
    """Runs of ``seed`` whose recorded ``--set`` items are not this plan's (another preset, data
    root or switches wrote the folder): run -> ``missing`` / ``unexpected`` items."""
    found_ckpts = {m.name: stages.last_checkpoint(plan.out / f"seed{seed}" / m.name) for m in plan.frozen_models}
    ckpts = {name: ckpt for name, ckpt in found_ckpts.items() if ckpt is not None}
    found = {}
    for row in plan.rows:
        recorded = run_record.train_command(plan.run_dir(seed, row))
        if recorded is None:
            continue
        try:
            wanted = plan.overrides(row) + plan.frozen_overrides(seed, row, ckpts)
        except KeyError:  # the frozen model has no checkpoint: nothing to compare with
            continue
        have = run_record.canonical_checkpoint_items(run_record.set_items(recorded))
        missing, unexpected = [i for i in wanted if i not in have], [i for i in have if i not in wanted]
        if missing or unexpected:
            found[f"seed{seed}/{plan.folders[row]}"] = {"missing": missing, "unexpected": unexpected}
    return found


def collect(plan: Plan, finished_only: bool = False) -> dict:
    """The results JSON, read from the run folders alone (no training): every row's per-seed
    flat metrics, mean / std, and its paired difference to the baseline (``reference``) at the
    same seeds over :data:`SUMMARY_KEYS` (``mean``, ``std``, ``per_seed``, ``ci95``); the
    precision, val frames and ``--set`` items each run recorded. ``finished_only``: only the
    seeds whose every row has trained and been evaluated (``partial`` when some have not);
    otherwise a missing run is a StageError."""
    seeds = plan.seeds
    if finished_only:
        seeds = [s for s in plan.seeds if all(_finished(plan, s, r) for r in plan.rows)]
        if not seeds:
            raise stages.StageError(f"{plan.out}: no seed of {plan.seeds} has every row trained and evaluated")
    flats = {r: {s: stages.read_flat(plan.eval_dir(s, r)) for s in seeds} for r in plan.rows}
    precisions = {r: [run_record.precision(plan.run_dir(s, r)) for s in seeds] for r in plan.rows}
    frames = [run_record.evaluated_frames(plan.eval_dir(s, r)) for r in plan.rows for s in seeds]
    reference = plan.reference()
    data = plan.preset["data"]
    results = {"preset": plan.preset_name, "preset_file": plan.preset["_path"], "method": plan.method,
               "data": str(plan.root), "seeds": seeds, "planned_seeds": plan.seeds, "partial": seeds != plan.seeds,
               "train_frames": int(data["num_train"]),
               **run_record.common([f for f in frames if f is not None], "val_frames"),
               **run_record.common([p for r in plan.rows for p in precisions[r]], "precision"),
               "train_args": {r: {"recipe": _shown(plan.recipe(r)), "overrides": plan.overrides(r),
                                  "extra": plan.extra_train} for r in plan.rows},
               "summary_keys": SUMMARY_KEYS, "reference": reference, "ci_method": CI_METHOD,
               "mismatched_runs": {k: v for s in seeds for k, v in _mismatches(plan, s).items()}, "rows": []}
    labels = {**{m.name: m.label for m in plan.frozen_models}, **ablation(plan.method)["labels"]}
    for row in plan.rows:
        per_seed = [flats[row][s] for s in seeds]
        paired = None
        if reference not in (None, row):
            base = [flats[reference][s] for s in seeds]
            keys = [k for k in SUMMARY_KEYS if all(k in flat for flat in per_seed + base)]  # all, from an evaluation
            paired = paired_differences(per_seed, base, keys)
        results["rows"].append({
            "name": row, "label": labels.get(row, row), "run": plan.folders[row],
            "overrides": [] if row in plan.frozen else list(plan.row_items[row]),
            "paper_ap3d": list(plan.paper[row]) if row in plan.paper else None,
            **run_record.common(precisions[row], "precision"),
            **aggregate(per_seed), "per_seed": {str(s): flats[row][s] for s in seeds}, "paired": paired,
        })
    return results


def _shown(path: Path) -> str:
    """A recipe as the JSON shows it: relative to the repository when inside it."""
    try:
        return str(path.relative_to(demo_presets.REPO_ROOT))
    except ValueError:
        return str(path)


def write_results(results: dict, results_dir: str | Path) -> Path:
    """``<method>_ablation.json`` and ``.md`` under ``results_dir``; returns the markdown's path."""
    results_dir = Path(results_dir)
    method = results.get("method", "add")
    write_text(results_dir / f"{method}_ablation.json", json.dumps(results, indent=1))
    write_text(results_dir / f"{method}_ablation.md", markdown(results))
    return results_dir / f"{method}_ablation.md"


def run_ablation(preset_name: str, seeds: int, out: str | Path, results_dir: str | Path,
                 rows_spec: str | None = None, data_root: str | Path | None = None,
                 extra_train: Sequence[str] = (), seed_offset: int | None = None, method: str | None = None,
                 finished_only: bool = False) -> dict:
    """Train and evaluate every row for every seed (reusing finished runs), then write the JSON
    and markdown from the run folders (:func:`collect`); return the JSON's content.
    ``finished_only``: train nothing, report the seeds whose every run is done (runs that
    other processes wrote into the same ``out``, e.g. one process a seed). ``method``: the demo
    story's (default: the preset's, else add)."""
    plan = plan_ablation(preset_name, seeds, out, rows_spec, data_root, extra_train, seed_offset, method)
    if not finished_only:
        train_rows(plan)
    results = collect(plan, finished_only)
    for run, diff in results["mismatched_runs"].items():
        print(f"ablation: warning: {plan.out / run} was trained with other settings than this preset's: {diff}",
              flush=True)
    print(f"ablation: {write_results(results, results_dir)}", flush=True)
    return results
