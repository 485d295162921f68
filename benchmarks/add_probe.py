"""How much object depth each signal ADD distils carries: linear probes on trained checkpoints.

    python benchmarks/add_probe.py --runs runs/add_power [--teacher teacher-s444] [--data ROOT]
    python benchmarks/add_probe.py --ckpt teacher=T.ckpt --ckpt baseline=B.ckpt --ckpt add=A.ckpt --teacher teacher

For every checkpoint (teacher, baseline, ADD students; with ``--runs``, every ``RUN/*/last.ckpt``):

1. *Feature probes.* At the foreground cells of each distilled map (every
   ``features`` signal level, T^k / F^k of Eq. 4, and every source of
   ``distill_spec.sources``, e.g. MonoDETR's ``depth_memory``), a ridge regression of the
   log-depth of the object owning the cell (the object-wise GT depth map of ADD's PE, nearer
   over farther) from the C feature values, fitted on train frames, scored on val frames:
   median |exp(prediction) - depth| in metres. The ridge penalty is chosen on a 20 % hold-out
   of the train cells among ``RIDGE_LAMBDAS``, then refitted on all of them; features are
   standardised with the train statistics.
2. *Query probes.* The same on the decoder query states (every layer, T_v^k / F_v^k of Eq. 5)
   of the queries the model's own Hungarian matching (final layer) assigns to each GT object.
3. *Query-index agreement.* On val, the fraction of GT objects whose teacher-matched query
   index equals the checkpoint's own: how often Eq. 5's index pairing (query i <-> query i)
   compares states of the same object.
4. *Teacher AP without its GT decode.* For every GT-depth teacher, ``monokd evaluate`` with
   ``model.gt_depth_decode=false`` (and ``true``): what the teacher is worth when it decodes
   depth the way it was trained to (the mean fusion), rather than from its GT input
   (evaluations written next to the checkpoint, ``probe-eval-gt-decode-{true,false}``, and
   reused on a rerun).

"constant" is the error of predicting the train median depth everywhere (the floor a useless
signal reaches). Writes ``benchmarks/results/add_probe.{json,md}``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monokd.config import get  # noqa: E402
from monokd.data.dataset import KittiDataset, collate  # noqa: E402
from monokd.distill.add.masks import gt_depth_maps  # noqa: E402
from monokd.models.contract import SIGNALS  # noqa: E402
from monokd.pipeline import demo  # noqa: E402
from monokd.training.checkpoint import load_detector  # noqa: E402
from _results import write_report  # noqa: E402  (benchmarks/_results.py)

RIDGE_LAMBDAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
CELLS_PER_IMAGE = 32  # foreground cells sampled per image and map (bounded memory, all objects reached)


# --- the ridge probe -----------------------------------------------------------------------------
def _fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Ridge weights and intercept on standardised features (intercept not penalised)."""
    y_mean = y.mean()
    gram = x.T @ x + lam * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ (y - y_mean)), float(y_mean)


def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                seed: int = 0) -> dict:
    """Fit log-depth ~ x on train (penalty chosen on a train hold-out), score on val.

    Args:
        x_*: (N, C) features; y_*: (N,) log-depth.
    Returns:
        median_abs_m / median_rel / within_1m on val (depth = exp of the prediction),
        constant_median_abs_m (the train median everywhere), lambda, n_train, n_val.
    """
    if len(x_train) < 4 or len(x_val) == 0:
        return {"n_train": int(len(x_train)), "n_val": int(len(x_val)), "median_abs_m": None}
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt, xv = (x_train - mean) / std, (x_val - mean) / std
    order = np.random.default_rng(seed).permutation(len(xt))
    hold, fit = order[: max(1, len(xt) // 5)], order[max(1, len(xt) // 5):]
    errors = {}
    for lam in RIDGE_LAMBDAS:
        w, b = _fit(xt[fit], y_train[fit], lam)
        errors[lam] = float(np.median(np.abs(np.exp(xt[hold] @ w + b) - np.exp(y_train[hold]))))
    lam = min(errors, key=errors.get)
    w, b = _fit(xt, y_train, lam)
    depth, pred = np.exp(y_val), np.exp(xv @ w + b)
    abs_err = np.abs(pred - depth)
    return {"median_abs_m": float(np.median(abs_err)), "median_rel": float(np.median(abs_err / depth)),
            "within_1m": float((abs_err < 1.0).mean()),
            "constant_median_abs_m": float(np.median(np.abs(np.exp(np.median(y_train)) - depth))),
            "lambda": lam, "n_train": int(len(xt)), "n_val": int(len(xv))}


# --- what one checkpoint shows on one split ------------------------------------------------------
def wanted_signals(model) -> set[str]:
    """The signals :func:`_maps` and the query probes read: features, every source, queries."""
    return {"features", "queries", *model.distill_spec.sources}


def _maps(model, outputs: dict) -> dict[str, tuple[torch.Tensor, int]]:
    """name -> ((B, C, h, w) map, stride) of every distilled map the detector exposes."""
    spec, signals = model.distill_spec, outputs[SIGNALS]
    maps = {f"encoder_input/{k}": (f, s) for k, (f, s, space) in
            enumerate(zip(signals.features, spec.feature_strides, spec.spaces)) if space == "image"}
    for name, (_, strides) in spec.sources.items():
        for k, (f, s) in enumerate(zip(getattr(signals, name), strides)):
            maps[name if len(strides) == 1 else f"{name}/{k}"] = (f, s)
    return maps


@torch.no_grad()
def collect(model, data, batch_size: int = 8, seed: int = 0) -> dict:
    """Per signal, (X (N, C), log-depth (N,)) at the foreground; and per frame, GT j -> query."""
    gen = torch.Generator().manual_seed(seed)
    samples: dict[str, tuple[list, list]] = {}
    matched: list[dict[int, int]] = []
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        outputs = model(batch, signals=wanted_signals(model))
        for name, (fmap, stride) in _maps(model, outputs).items():
            depth = gt_depth_maps(batch["targets"], tuple(fmap.shape[-2:]), stride, fmap.device)[:, 0]
            xs, ys = samples.setdefault(name, ([], []))
            for b in range(fmap.shape[0]):
                cells = (depth[b] > 0).flatten().nonzero()[:, 0]
                cells = cells[torch.randperm(len(cells), generator=gen)[:CELLS_PER_IMAGE]]
                xs.append(fmap[b].flatten(1)[:, cells].T.double().numpy())
                ys.append(depth[b].flatten()[cells].log().double().numpy())
        queries = outputs[SIGNALS].queries  # (L, B, Q, C)
        for b, (q, t) in enumerate(model.match_foreground(outputs, batch)):
            q, t = torch.as_tensor(q, dtype=torch.long), torch.as_tensor(t, dtype=torch.long)
            matched.append({int(j): int(i) for i, j in zip(q, t)})
            log_depth = batch["targets"][b]["depth"][t].log().double().numpy()
            for layer in range(queries.shape[0]):
                xs, ys = samples.setdefault(f"queries/layer{layer + 1}", ([], []))
                xs.append(queries[layer, b, q].double().numpy())
                ys.append(log_depth)
    return {"samples": {k: (np.concatenate(x), np.concatenate(y)) for k, (x, y) in samples.items()},
            "matched": matched}


def index_agreement(teacher: list[dict[int, int]], student: list[dict[int, int]]) -> dict:
    """Fraction of GT objects (matched by both) whose query index is the same in both."""
    same = total = 0
    for t_frame, s_frame in zip(teacher, student):
        for j, q in t_frame.items():
            if j in s_frame:
                total += 1
                same += int(s_frame[j] == q)
    return {"fraction": same / total if total else None, "objects": total}


def _subset(data, limit: int | None):
    if limit is None or limit >= len(data):
        return data
    return torch.utils.data.Subset(data, list(range(limit)))


def probe_checkpoint(ckpt: Path, root: str | None, max_train: int | None, max_val: int | None) -> dict:
    model, cfg = load_detector(ckpt)
    root = root or get(cfg, "data.root")
    splits = {s: _subset(KittiDataset(root, s, cfg, augment=False), n) for s, n in (("train", max_train), ("val", max_val))}
    seen = {s: collect(model, d) for s, d in splits.items()}
    probes = {}
    for name, (x_train, y_train) in seen["train"]["samples"].items():
        x_val, y_val = seen["val"]["samples"].get(name, (np.zeros((0, x_train.shape[1])), np.zeros(0)))
        probes[name] = ridge_probe(x_train, y_train, x_val, y_val)
    teacher = get(cfg, "model.depth_input") == "gt_object"
    return {"ckpt": str(ckpt), "teacher": teacher, "train_frames": len(splits["train"]),
            "val_frames": len(splits["val"]), "probes": probes, "_matched": seen["val"]["matched"]}


def teacher_ap(ckpt: Path, out_dir: Path, root: str | None) -> dict:
    """Car R40 moderate AP of a GT-depth teacher with and without decoding from its GT input."""
    result = {}
    for decode in ("true", "false"):
        eval_dir = out_dir / f"probe-eval-gt-decode-{decode}"
        if demo.evaluation_json(eval_dir) is None:
            extra = ["--set", f"model.gt_depth_decode={decode}"] + (["--set", f"data.root={root}"] if root else [])
            demo.run_command(["evaluate", "--ckpt", str(ckpt), "--split", "val", "--out", str(eval_dir), *extra],
                             f"evaluate {ckpt} gt_depth_decode={decode}")
        flat = demo.read_flat(eval_dir)
        result[f"gt_depth_decode={decode}"] = {k: flat[k] for k in flat if "/moderate/R40@" in k and k.startswith("Car/")}
    return result


# --- report --------------------------------------------------------------------------------------
def _m(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def markdown(results: dict) -> str:
    models = results["models"]
    signals = list(dict.fromkeys(s for m in models.values() for s in m["probes"]))
    lines = ["# What ADD's distilled signals know about object depth", "",
             "Ridge probe of log-depth, fitted on train, median |error| (m) on val "
             f"({results['note']}). `python benchmarks/add_probe.py`. constant = the train median predicted "
             "everywhere, per column (each map samples its own foreground cells; the query columns score the "
             "matched queries). The last row gives each column's samples, train / val, of the first model.", "",
             "| model | " + " | ".join(signals) + " | query index = teacher's |", "|---" * (len(signals) + 2) + "|"]
    for name, m in models.items():
        agree = (m.get("index_agreement") or {}).get("fraction")
        cells = [_m(m["probes"].get(s, {}).get("median_abs_m")) for s in signals]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'-' if agree is None else f'{agree:.3f}'} |")
    first = next(iter(models.values()))
    lines.append("| constant | " + " | ".join(_m(first["probes"].get(s, {}).get("constant_median_abs_m"))
                                              for s in signals) + " | |")
    lines.append("| samples (train / val) | " + " | ".join(
        f"{first['probes'][s]['n_train']} / {first['probes'][s]['n_val']}" if s in first["probes"] else "-"
        for s in signals) + " | |")
    aps = {n: m["ap"] for n, m in models.items() if m.get("ap")}
    if aps:
        lines += ["", "Teacher Car AP R40 moderate, decoding depth from its GT input (`gt_depth_decode=true`) or "
                  "with the mean fusion it was trained with (`false`):", "",
                  "| teacher | decode | AP3D@0.7 | AP3D@0.5 | 2-D AP@0.7 |", "|---|---|---|---|---|"]
        for name, ap in aps.items():
            for decode, flat in ap.items():
                lines.append(f"| {name} | {decode} | {_m(flat.get('Car/3d/moderate/R40@0.70'))} | "
                             f"{_m(flat.get('Car/3d/moderate/R40@0.50'))} | {_m(flat.get('Car/bbox/moderate/R40@0.70'))} |")
    return "\n".join(lines) + "\n"


def checkpoints(args) -> dict[str, Path]:
    ckpts = {}
    for item in args.ckpt:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"add_probe: --ckpt {item!r} is not NAME=PATH")
        ckpts[name] = Path(path)
    if args.runs:
        for run in sorted(Path(args.runs).iterdir()):
            if (run / "last.ckpt").is_file():
                ckpts.setdefault(run.name, run / "last.ckpt")
    if not ckpts:
        raise SystemExit("add_probe: no checkpoint (give --ckpt NAME=PATH or --runs DIR)")
    return ckpts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", action="append", default=[], metavar="NAME=PATH",
                        help="a checkpoint to probe, named NAME in the results (repeatable)")
    parser.add_argument("--runs", default=None, help="every RUN/*/last.ckpt (names = folders)")
    parser.add_argument("--teacher", default=None, help="name of the reference teacher (default: the first GT-depth one)")
    parser.add_argument("--data", default=None, help="SynthKITTI / KITTI root (default: each checkpoint's data.root)")
    parser.add_argument("--max-train", type=int, default=None, help="train frames probed (default all)")
    parser.add_argument("--max-val", type=int, default=None, help="val frames probed (default all)")
    parser.add_argument("--no-ap", action="store_true", help="skip the teachers' gt_depth_decode=false evaluation")
    parser.add_argument("--note", default="", help="what the checkpoints are (written into the results)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "add_probe"),
                        help="results path without suffix (default: the shipped benchmarks/results/add_probe)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ckpts = checkpoints(args)
    models = {name: probe_checkpoint(path, args.data, args.max_train, args.max_val) for name, path in ckpts.items()}
    matched = {name: m.pop("_matched") for name, m in models.items()}
    teacher = args.teacher or next((n for n, m in models.items() if m["teacher"]), None)
    if teacher is not None and teacher not in models:
        raise SystemExit(f"add_probe: --teacher {teacher!r} is not one of {sorted(models)}")
    for name, m in models.items():
        if teacher is not None:
            m["index_agreement"] = index_agreement(matched[teacher], matched[name])
        if m["teacher"] and not args.no_ap:
            m["ap"] = teacher_ap(ckpts[name], ckpts[name].parent, args.data)
    note = args.note or f"{len(models)} checkpoints, {next(iter(models.values()))['val_frames']} val frames"
    results = {"note": note, "reference_teacher": teacher, "cells_per_image": CELLS_PER_IMAGE,
               "ridge_lambdas": list(RIDGE_LAMBDAS), "models": models}
    out = Path(args.out)
    write_report(results, markdown(results), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
