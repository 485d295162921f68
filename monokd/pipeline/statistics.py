"""Statistics over seeds: mean and sample std per metric, the Student-t 95 % interval of a
mean, and paired differences (the ablations' tables and the benchmarks' verdicts)."""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def aggregate(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, sample std (n - 1; 0 for one seed) and n of every key present in all seeds:
    ``{"mean": {k: ...}, "std": {k: ...}, "n": n}``."""
    if not per_seed:
        return {"mean": {}, "std": {}, "n": 0}
    keys = [k for k in per_seed[0] if all(k in s for s in per_seed[1:])]
    n = len(per_seed)
    mean, std = {}, {}
    for key in keys:
        values = [float(s[key]) for s in per_seed]
        mean[key] = sum(values) / n
        std[key] = math.sqrt(sum((v - mean[key]) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def t_interval95(values: Sequence[float]) -> list[float] | None:
    """Two-sided 95 % Student-t confidence interval of the mean of ``values``:
    mean -+ t(0.975, n - 1) * std / sqrt(n), std the sample std; None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    from scipy.stats import t

    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return [mean - half, mean + half]


def paired_differences(a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]],
                       names: Sequence[str]) -> dict[str, dict]:
    """Per name, over seeds paired by position: ``mean``, sample ``std``, ``per_seed`` values of
    a[name] - b[name] and their 95 % t-interval ``ci95`` ([low, high], None below 2 seeds)."""
    if len(a) != len(b):
        raise ValueError(f"paired_differences: {len(a)} vs {len(b)} seeds")
    diffs = [{n: float(x[n]) - float(y[n]) for n in names} for x, y in zip(a, b)]
    stats = aggregate(diffs)
    return {n: {"mean": stats["mean"].get(n, math.nan), "std": stats["std"].get(n, math.nan),
                "per_seed": [d[n] for d in diffs], "ci95": t_interval95([d[n] for d in diffs])} for n in names}
