"""``monokd ablate``: the ADD ablations (the paper's Table 4 and the PE rows of Table 5), or
with ``--method takd`` MonoTAKD's component ablation, over seeds, as mean +- std per row.

Every seed trains one GT-depth teacher; each row is the ADD recipe with the row's switches
(``monokd.distill.add.PRESETS``) set, trained from that teacher, then evaluated on val. Rows
whose overrides coincide (F+SA and "SA w/ GT PE") share one run. Runs live under
``OUT/seed<k>/<row>/`` and are reused on a rerun (the demo's stage markers). Results:
``RESULTS/add_ablation.json`` and ``RESULTS/add_ablation.md``.

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
from pathlib import Path
from typing import Mapping, Sequence

from monokd.atomic import write_text
from monokd.errors import ConfigError
from monokd.pipeline import presets as demo_presets
from monokd.pipeline import stages
from monokd.pipeline.statistics import aggregate

TEACHER_ROW = "teacher"
METHODS = ("add", "takd")  # the methods whose distiller declares ABLATION (monokd.distill.<method>.distiller)
# The metrics of the markdown tables (every flat key is kept in the JSON).
SUMMARY_KEYS = [f"Car/{m}/moderate/R40@{iou}" for iou in ("0.70", "0.50") for m in ("3d", "bev")]


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


def markdown(results: dict) -> str:
    """The ablation tables (mean +- std over seeds) at IoU 0.7 and 0.5, with the paper's KITTI
    val AP3D (easy / mod. / hard at 0.7) beside each row where the paper has one."""
    from monokd.viz.report import metric_table

    rows = [(r["label"], {k: (r["mean"][k], r["std"][k]) for k in r["mean"]}) for r in results["rows"]]
    paper = {r["label"]: "/".join(f"{v:.2f}" for v in r["paper_ap3d"]) if r.get("paper_ap3d") else "-"
             for r in results["rows"]}
    seeds = results["seeds"]
    about = ablation(results.get("method", "add"))
    title, rows_text = about["title"], about["rows"]
    head = [f"# {title} ablation on preset `{results['preset']}`", "",
            f"Car AP (R40, %) on the val split, mean ± sample std over {len(seeds)} seed(s) {seeds}. "
            f"{rows_text}; the last column is the paper's "
            "KITTI val AP3D@0.7 easy/mod./hard (real KITTI, full recipe, for orientation only).", ""]
    tables = [metric_table(rows, iou, extra={"paper AP3D@0.7 (KITTI)": paper} if iou == 0.7 else None,
                           label="row") for iou in (0.7, 0.5)]
    return "\n".join(head) + "\n" + "\n".join(tables)


def run_ablation(preset_name: str, seeds: int, out: str | Path, results_dir: str | Path,
                 rows_spec: str | None = None, data_root: str | Path | None = None,
                 extra_train: Sequence[str] = (), seed_offset: int | None = None, method: str | None = None) -> dict:
    """Train and evaluate every row for every seed (reusing finished runs); write the JSON and
    markdown; return the JSON's content. ``method``: the demo story's (default: the preset's, else add)."""
    preset = demo_presets.load_preset(preset_name, None, method)
    method, plot = preset["method"], preset["story"]
    student = next(m for m in plot.models if m.role == "distilled")  # the story's distilled model
    frozen_models = [plot.model(name) for name in (student.teacher, student.ta) if name]
    frozen = [m.name for m in frozen_models]
    row_items, tables, paper = distill_rows(method)
    rows = resolve_rows(rows_spec or preset.get("rows"), preset_name, row_items, tables, frozen,
                        ablation(method)["default_rows"])
    folders = run_names(rows, row_items, frozen)
    out = Path(out)
    data = preset["data"]
    root = Path(data_root or data.get("root") or out / "data" / "synthkitti")
    base_seed = int(preset.get("seed", 0)) if seed_offset is None else seed_offset
    seed_list = [base_seed + k for k in range(seeds)]
    needs_teacher = any(r in frozen or "distill=null" not in row_items[r] for r in rows)
    clock = stages.Clock(prefix="ablate")
    total = 1 + len(seed_list) * (len(frozen) * int(needs_teacher) + len(set(folders.values()) - set(frozen)))
    step = 1
    clock.banner(step, total, "data", f"SynthKITTI at {root}")
    stages.ensure_synth(root, int(data["num_train"]), int(data["num_val"]), int(data.get("seed", 0)),
                      int(data.get("width", 416)), int(data.get("height", 128)), int(data.get("workers", 1)))

    metrics: dict[str, dict[int, dict[str, float]]] = {}  # folder -> seed -> flat
    for seed in seed_list:
        seed_dir = out / f"seed{seed}"
        ckpts = {}
        for model in frozen_models if needs_teacher else []:
            model_dir = seed_dir / model.name
            step += 1
            clock.banner(step, total, f"seed {seed} {model.name}", f"-> {model_dir}")
            ckpts[model.name] = stages.train(demo_presets.recipe(preset, model.name), model_dir,
                                           demo_presets.stage_overrides(preset, model.name, root), seed, extra_train,
                                           stage=model.name)
            if model.name in rows:
                metrics.setdefault(model.name, {})[seed] = stages.evaluate(model_dir, seed_dir / "eval" / model.name)
        for folder in dict.fromkeys(f for r, f in folders.items() if r not in frozen):
            row = next(r for r, f in folders.items() if f == folder)
            run_dir = seed_dir / folder
            step += 1
            clock.banner(step, total, f"seed {seed} {row}", f"-> {run_dir}")
            overrides = demo_presets.stage_overrides(preset, student.name, root) + list(row_items[row])
            if "distill=null" not in row_items[row]:
                overrides += demo_presets.teacher_overrides(seed_dir / student.teacher, ckpts[student.teacher])
                if student.ta:
                    overrides += demo_presets.ta_overrides(seed_dir / student.ta, ckpts[student.ta])
            stages.train(demo_presets.recipe(preset, student.name), run_dir, overrides, seed, extra_train, stage=row)
            metrics.setdefault(folder, {})[seed] = stages.evaluate(run_dir, seed_dir / "eval" / folder, stage=row)

    results = {"preset": preset_name, "preset_file": preset["_path"], "method": method, "data": str(root),
               "seeds": seed_list, "summary_keys": SUMMARY_KEYS, "rows": []}
    labels = {**{m.name: m.label for m in frozen_models}, **ablation(method)["labels"]}
    for row in rows:
        per_seed = metrics[folders[row]]
        stats = aggregate([per_seed[s] for s in seed_list])
        results["rows"].append({
            "name": row, "label": labels.get(row, row), "run": folders[row],
            "overrides": [] if row in frozen else list(row_items[row]),
            "paper_ap3d": list(paper[row]) if row in paper else None,
            **stats, "per_seed": {str(s): per_seed[s] for s in seed_list},
        })
    results_dir = Path(results_dir)
    write_text(results_dir / f"{method}_ablation.json", json.dumps(results, indent=1))
    write_text(results_dir / f"{method}_ablation.md", markdown(results))
    print(f"\nablation: {results_dir / f'{method}_ablation.md'} (total {clock.elapsed()})", flush=True)
    return results
