"""Training step time of every SynthKITTI recipe on this CPU: fp32 against bf16 autocast,
eager against ``torch.compile`` (inductor), one thread, interleaved; and one training alone
against two side by side (two processes, one thread each), and alone on two threads.

The step is the training's own (monokd.training.module.DetectorModule): the module's model
(a distiller with its frozen teachers built untrained from their configs, as
``distill.<role>.config`` does), forward, losses, backward, the module's gradient clipping,
AdamW. bf16 is ``torch.autocast("cpu", torch.bfloat16)`` around forward and losses, as
Lightning's ``bf16-mixed`` does. Batches are SynthKITTI frames rendered on the fly and warped
to each recipe's input size (the timings depend only on that size); PatchNet reads the
rendered depth_2 as its depth maps (the estimated maps have the same format). Medians of
``--steps`` timed steps per variant after one untimed warm-up (two for a compiled variant:
its compile time is reported apart, ``compile_s``). Writes benchmarks/results/train_speed.json.

    python benchmarks/train_speed.py [--models monodetr,caddn] [--steps 3] [--no-compile]
        [--compile-models all] [--pairs monodetr+add_monodetr] [--quick] [--out PATH]
    python benchmarks/train_speed.py --profile MODEL [--bf16] [--steps 2]
    python benchmarks/train_speed.py --profile all --profile-out benchmarks/results/train_profile.json

``--profile`` prints one model's torch.profiler table; with ``--profile-out`` it writes, for each
model named (``all``: every one) in fp32 and in bf16, the self CPU time of a step and its top
ops by self CPU time (``top_ops``: op, milliseconds a step, share of the step, calls a step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from monokd.config import load_config  # noqa: E402
from monokd.data.dataset import KittiDataset, collate  # noqa: E402
from monokd.data.synth import generate  # noqa: E402
from monokd.training.precision import CPU_BF16_FLAGS, cpu_has_bf16  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)

# name -> (recipe, {frozen role: the recipe its untrained model is built from}, overrides)
MODELS = {
    "monodetr": ("monodetr_synth.yaml", {}),
    "monodetr_teacher": ("monodetr_teacher_synth.yaml", {}),
    "add_monodetr": ("add_monodetr_synth.yaml", {"teacher": "monodetr_teacher_synth.yaml"}),
    "caddn": ("caddn_synth.yaml", {}),
    "add_caddn": ("add_caddn_synth.yaml", {"teacher": "caddn_teacher_synth.yaml"}),
    "patchnet": ("patchnet_synth.yaml", {}),
    "depth": ("depth_synth.yaml", {}, ["data.depth_maps=depth_2"]),  # as `monokd depth train` sets
    "lidar_teacher": ("takd_lidar_synth.yaml", {}),
    "ta": ("takd_ta_synth.yaml", {}),
    "takd": ("takd_synth.yaml", {"teacher": "takd_lidar_synth.yaml", "ta": "takd_ta_synth.yaml"}),
}
VARIANTS = ("fp32", "bf16", "fp32_compiled", "bf16_compiled")
# --quick: sizes at which every recipe still builds and steps (the tests' run)
QUICK = {"input_size": [128, 64], "batch_size": 2}
DEFAULT_PAIRS = ("monodetr+add_monodetr", "caddn+caddn")
DEFAULT_COMPILE = ("monodetr",)


def batches(cfg: dict, root: Path, batch_size: int) -> tuple[dict, dict]:
    """(a training batch of ``batch_size`` augmented frames, a batch of 1 for inference)."""
    train = KittiDataset(root, "train", cfg, augment=True)
    plain = KittiDataset(root, "train", cfg, augment=False)
    return collate([train[i % len(train)] for i in range(batch_size)]), collate([plain[0]])


def recipe(name: str, root: Path, work: Path, quick: bool, models: dict = MODELS,
           size: dict | None = None) -> dict:
    """The resolved config of model ``name`` of ``models`` on the SynthKITTI at ``root``; its
    frozen models' configs (resolved the same way) are written under ``work`` and named by
    ``distill.<role>.config`` with no checkpoint: untrained, as speed does not depend on
    weights. ``quick`` (or ``size``: {input_size, batch_size}) shrinks input and batch."""
    path, frozen, *extra = models[name]
    common = [f"data.root={root}", f"data.depth_pred_dir={root / 'training' / 'depth_2'}"]
    size = size or (QUICK if quick else None)
    if size:
        common += [f"data.input_size={size['input_size']}", f"train.batch_size={size['batch_size']}"]
    overrides = common + [item for items in extra for item in items]
    for role, frozen_recipe in frozen.items():
        frozen_cfg = load_config(REPO / "configs" / frozen_recipe, common)
        frozen_path = work / f"{Path(path).stem}_{role}.yaml"
        frozen_path.write_text(yaml.safe_dump(frozen_cfg))
        overrides += [f"distill.{role}.ckpt=null", f"distill.{role}.config={frozen_path}"]
    return load_config(REPO / "configs" / path, overrides)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int) -> dict:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "platform": platform.platform(), "bf16_native": cpu_has_bf16(),
            "bf16_flags": sorted(f for f in CPU_BF16_FLAGS if f in flags), "amx": sorted(f for f in flags if f.startswith("amx")),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


class Trainee:
    """One model's training step, as DetectorModule.training_step takes it (without the
    logging and the learning-rate schedule, which cost nothing measurable), on ``device``."""

    def __init__(self, cfg: dict, batch: dict, compiled: bool = False, seed: int = 0,
                 device: torch.device | str = "cpu"):
        from monokd.training.inference import to_device
        from monokd.training.module import DetectorModule

        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.module = DetectorModule(cfg).to(self.device)
        self.module.train()
        if compiled:
            self.module.model.compile(backend="inductor")  # in place: the state dict keeps its keys
        self.optimizer = self.module.configure_optimizers()
        self.batch = to_device(batch, self.device)

    def step(self, bf16: bool = False) -> float:
        """One training step (under bf16 autocast if ``bf16``); its loss (a host sync)."""
        model = self.module.model
        with torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = model.losses(model(self.batch), self.batch)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.module.on_before_optimizer_step(self.optimizer)
        self.optimizer.step()
        return float(loss.detach())


def timed(call, *args) -> float:
    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start


def optimizer_update_s(trainee: Trainee, cfg: dict, repeats: int = 3) -> dict:
    """Seconds of the AdamW update alone (the step's last part) over the trainee's parameters
    and gradients: the default per-tensor loop against ``train.fused_optimizer``."""
    from monokd.training.schedule import build_optimizer

    out = {}
    params = [p for p in trainee.module.model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    saved = [p.detach().clone() for p in params]
    for name, fused in (("default", False), ("fused", True)):
        optimizer = build_optimizer(trainee.module.model, {**cfg, "train": {**cfg["train"], "fused_optimizer": fused}})
        optimizer.step()  # the moments are allocated at the first update
        out[name] = round(min(timed(optimizer.step) for _ in range(repeats)), 4)
    with torch.no_grad():
        for p, value in zip(params, saved):
            p.copy_(value)
    out["fused_speedup"] = round(out["default"] / out["fused"], 3)
    return out


def measure_model(cfg: dict, batch: dict, steps: int, compiled: bool) -> dict:
    """The model's variants stepped in turn (fp32, bf16[, fp32 compiled, bf16 compiled]) ``steps``
    times after their warm-ups; medians, warm-up times, the compile time, the losses seen. fp32
    and bf16 share a module (autocast is a context, not a model change), as do the compiled two."""
    variants = [v for v in VARIANTS if compiled or not v.endswith("_compiled")]
    modules: dict[bool, Trainee] = {}
    ready, warmup, errors = {}, {}, {}
    start = time.perf_counter()
    for variant in variants:
        bf16, is_compiled = variant.startswith("bf16"), variant.endswith("_compiled")
        try:
            if is_compiled not in modules:
                modules[is_compiled] = Trainee(cfg, batch, is_compiled)
            trainee = modules[is_compiled]
            # a compiled variant's first steps compile (forward and backward graphs, then recompiles)
            warmup[variant] = [timed(trainee.step, bf16) for _ in range(2 if is_compiled else 1)]
            ready[variant] = (trainee, bf16)
        except Exception as err:  # noqa: BLE001 - a variant that fails is reported, the others run
            errors[variant] = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
    setup_s = time.perf_counter() - start
    times = {v: [] for v in ready}
    losses = {v: [] for v in ready}
    for _ in range(steps):
        for variant, (trainee, bf16) in ready.items():  # interleaved: machine load hits all alike
            t0 = time.perf_counter()
            losses[variant].append(round(trainee.step(bf16), 4))
            times[variant].append(time.perf_counter() - t0)
    step_s = {v: round(statistics.median(t), 4) for v, t in times.items() if t}
    result = {"batch_size": len(batch["frame_ids"]), "input_size": cfg["data"]["input_size"],
              "step_s": step_s, "steps_s": {v: [round(x, 4) for x in t] for v, t in times.items()},
              "warmup_s": {v: [round(x, 3) for x in w] for v, w in warmup.items()},
              "compile_s": {v: round(sum(warmup[v]) - len(warmup[v]) * step_s[v], 2)
                            for v in step_s if v.endswith("_compiled")},
              "losses": losses, "setup_and_warmup_s": round(setup_s, 2)}
    if "fp32" in step_s and "bf16" in step_s:
        result["bf16_speedup"] = round(step_s["fp32"] / step_s["bf16"], 3)
    for v in ("fp32", "bf16"):
        if v in step_s and f"{v}_compiled" in step_s:
            result[f"{v}_compiled_speedup"] = round(step_s[v] / step_s[f"{v}_compiled"], 3)
    if False in modules:
        result["optimizer_update_s"] = optimizer_update_s(modules[False], cfg)
    if errors:
        result["errors"] = errors
    return result


# -- one training alone against two side by side (child processes) ------------------------------
def worker(args) -> int:
    """``--worker MODEL``: time ``--steps`` fp32 eager steps on ``--threads`` threads after a
    warm-up, starting together with the other workers of ``--barrier`` (a folder each one
    marks when ready); print one JSON line."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="train_speed_worker_") as work:
        # a distiller's teachers are built from the configs written into ``work``
        cfg = recipe(args.worker, Path(args.root), Path(work), args.quick)
        batch, _ = batches(cfg, Path(args.root), int(cfg["train"]["batch_size"]))
        trainee = Trainee(cfg, batch)
    trainee.step()
    if args.barrier:
        barrier = Path(args.barrier)
        (barrier / f"{os.getpid()}.ready").write_text("")
        while len(list(barrier.glob("*.ready"))) < args.barrier_count:
            time.sleep(0.05)
    times = [timed(trainee.step) for _ in range(args.steps)]
    print(json.dumps({"model": args.worker, "threads": torch.get_num_threads(),
                      "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "steps_s": times,
                      "step_s": statistics.median(times)}), flush=True)
    return 0


def run_workers(models: list[str], threads: int, root: Path, steps: int, quick: bool,
                wait_policy: str | None = None) -> list[dict]:
    """Run one worker per entry of ``models`` at once, each on ``threads`` threads (OpenMP's
    ``wait_policy``: ACTIVE spins between parallel regions, PASSIVE sleeps; None: the library's
    default, which spins)."""
    with tempfile.TemporaryDirectory(prefix="train_speed_barrier_") as barrier:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONPATH": str(REPO)}
        env.pop("OMP_WAIT_POLICY", None)
        if wait_policy:
            env["OMP_WAIT_POLICY"] = wait_policy
        command = [sys.executable, str(Path(__file__).resolve()), "--root", str(root), "--steps", str(steps),
                   "--threads", str(threads), "--barrier", barrier, "--barrier-count", str(len(models))]
        children = [subprocess.Popen([*command, "--worker", m] + (["--quick"] if quick else []),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                    for m in models]
        out = []
        for child in children:
            stdout, stderr = child.communicate()
            if child.returncode:
                raise RuntimeError(f"train_speed worker failed ({child.returncode}):\n{stderr[-2000:]}")
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out


def side_by_side(pair: str, root: Path, steps: int, quick: bool) -> dict:
    """Pair ``a+b``: each alone on one thread; each alone on two threads, OpenMP threads
    spinning (the default) and sleeping (PASSIVE: what the demo's lanes set) between parallel
    regions; both at once on one thread each: the slowdown of each beside the other."""
    a, b = pair.split("+")
    names = [a] if a == b else [a, b]
    alone = {m: run_workers([m], 1, root, steps, quick)[0]["step_s"] for m in names}
    two = {m: run_workers([m], 2, root, steps, quick)[0] for m in names}
    passive = {m: run_workers([m], 2, root, steps, quick, "PASSIVE")[0] for m in names}
    together = run_workers([a, b], 1, root, steps, quick)
    return {
        "alone_1_thread_s": {m: round(v, 4) for m, v in alone.items()},
        "alone_2_threads_s": {m: round(w["step_s"], 4) for m, w in two.items()},
        "alone_2_threads_passive_s": {m: round(w["step_s"], 4) for m, w in passive.items()},
        "threads_seen_by_2_thread_worker": {m: w["threads"] for m, w in two.items()},
        "two_threads_speedup": {m: round(alone[m] / two[m]["step_s"], 3) for m in names},
        "two_threads_passive_speedup": {m: round(alone[m] / passive[m]["step_s"], 3) for m in names},
        "side_by_side_s": [round(w["step_s"], 4) for w in together],
        "slowdown": [round(w["step_s"] / alone[m], 3) for w, m in zip(together, [a, b])],
    }


# -- profile ----------------------------------------------------------------------------------
def profiled(name: str, root: Path, work: Path, steps: int, bf16: bool, quick: bool):
    """torch.profiler's record of ``steps`` training steps of ``name`` after one warm-up."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cfg = recipe(name, root, work, quick)
    batch, _ = batches(cfg, root, int(cfg["train"]["batch_size"]))
    trainee = Trainee(cfg, batch)
    trainee.step(bf16)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainee.step(bf16)
    return prof


def profile(name: str, root: Path, work: Path, steps: int, bf16: bool, quick: bool, rows: int = 20) -> str:
    """The torch.profiler table of :func:`profiled`: the top ops by self CPU time."""
    prof = profiled(name, root, work, steps, bf16, quick)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def profile_ops(name: str, root: Path, work: Path, steps: int, bf16: bool, quick: bool, top: int = 10) -> dict:
    """Where ``name``'s training step spends its time (:func:`profiled`): ``self_cpu_ms`` (the
    self CPU time of all ops a step, ms) and ``top_ops``, the ``top`` ops by self CPU time, each
    ``{op, ms, share, calls}`` a step (``share`` of ``self_cpu_ms``; ``aten::`` dropped)."""
    prof = profiled(name, root, work, steps, bf16, quick)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_us = sum(e.self_cpu_time_total for e in events)
    return {"self_cpu_ms": round(total_us / steps / 1000, 1),
            "top_ops": [{"op": e.key.removeprefix("aten::"), "ms": round(e.self_cpu_time_total / steps / 1000, 2),
                         "share": round(e.self_cpu_time_total / total_us, 4), "calls": e.count / steps}
                        for e in events[:top]]}


def profile_all(models: list[str], root: Path, work: Path, steps: int, quick: bool, threads: int) -> dict:
    """:func:`profile_ops` of every model in fp32 and in bf16: the JSON of ``--profile-out``."""
    doc = {"machine": machine(threads), "setup": {"steps": steps, "quick": quick, "sort": "self CPU time",
                                                  "precision_bf16": "torch.autocast('cpu', torch.bfloat16) over forward + losses"},
           "models": {}}
    for name in models:
        doc["models"][name] = {"config": f"configs/{MODELS[name][0]}",
                               **{variant: profile_ops(name, root, work, steps, variant == "bf16", quick)
                                  for variant in ("fp32", "bf16")}}
        top = doc["models"][name]["fp32"]["top_ops"][0]
        print(f"{name}: fp32 {doc['models'][name]['fp32']['self_cpu_ms']} ms a step, top {top['op']} "
              f"{100 * top['share']:.1f} %", flush=True)
    doc["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return doc


def finish(doc: dict, started: float, out: str | Path) -> None:
    """Stamp a timing run's ``doc`` with the load average at its end and its wall time since
    ``started`` (``time.perf_counter()``), then write it to ``out``."""
    doc["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(doc, out)


def names(text: str | None, default) -> list[str]:
    if text is None:
        return list(default)
    if text in ("", "none"):
        return []
    chosen = list(MODELS) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    for n in chosen:
        for part in n.split("+"):
            if part not in MODELS:
                raise SystemExit(f"train_speed: unknown model {part!r}; known: {', '.join(MODELS)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help=f"comma-separated, or all (default): {','.join(MODELS)}")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 3; --quick 1)")
    parser.add_argument("--no-compile", action="store_true", help="no torch.compile variants")
    parser.add_argument("--compile-models", default=None,
                        help=f"models timed compiled too (default {','.join(DEFAULT_COMPILE)}; all; none): "
                             "inductor's compile takes minutes per model on a CPU")
    parser.add_argument("--pairs", default=None,
                        help=f"side-by-side pairs a+b (default {','.join(DEFAULT_PAIRS)}; none)")
    parser.add_argument("--pair-steps", type=int, default=None, help="timed steps per side-by-side worker (default 3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (128x64, batch 2): the tests' run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", metavar="MODEL", help="print a torch.profiler table of MODEL's step and exit; "
                        "with --profile-out, MODELS (comma-separated, or all) into a JSON")
    parser.add_argument("--profile-out", default=None, help="--profile: write every model's top ops in fp32 and "
                        "bf16 to this JSON (benchmarks/results/train_profile.json)")
    parser.add_argument("--bf16", action="store_true", help="--profile: under bf16 autocast")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_speed.json"))
    # internal: the side-by-side workers
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", help=argparse.SUPPRESS)
    parser.add_argument("--barrier-count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.steps = args.steps or 3
        return worker(args)
    torch.set_num_threads(args.threads)
    steps = args.steps or (1 if args.quick else 3)
    models = names(args.models, MODELS)
    compiled = [] if args.no_compile else names(args.compile_models, DEFAULT_COMPILE)
    pairs = names(args.pairs, DEFAULT_PAIRS)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        size = {"width": 160, "height": 64} if args.quick else {}
        frames = QUICK["batch_size"] if args.quick else 8
        root = generate(Path(tmp) / "synth", num_train=frames, num_val=1, seed=0, **size)
        if args.profile and args.profile_out:
            doc = profile_all(names(args.profile, ()), root, Path(tmp), steps, args.quick, args.threads)
            doc["wall_s"] = round(time.perf_counter() - wall, 1)
            write_json(doc, args.profile_out)
            return 0
        if args.profile:
            names(args.profile, ())
            print(profile(args.profile, root, Path(tmp), steps, args.bf16, args.quick))
            return 0
        doc = {"machine": machine(args.threads),
               "setup": {"steps": steps, "quick": args.quick, "models": models, "compiled": compiled,
                         "pairs": pairs, "precision_bf16": "torch.autocast('cpu', torch.bfloat16) over forward + losses",
                         "compile": "nn.Module.compile(backend='inductor') of the module's model"},
               "models": {}, "side_by_side": {}}
        for name in models:
            cfg = recipe(name, root, Path(tmp), args.quick)
            batch, _ = batches(cfg, root, int(cfg["train"]["batch_size"]))
            row = {"config": f"configs/{MODELS[name][0]}", "frozen": {r: f"configs/{c}" for r, c in MODELS[name][1].items()},
                   **measure_model(cfg, batch, steps, name in compiled)}
            doc["models"][name] = row
            print(f"{name}: {json.dumps(row['step_s'])}" + (f" errors {row['errors']}" if "errors" in row else ""),
                  flush=True)
        for pair in pairs:
            doc["side_by_side"][pair] = side_by_side(pair, root, args.pair_steps or steps, args.quick)
            print(f"{pair}: {json.dumps(doc['side_by_side'][pair])}", flush=True)
    finish(doc, wall, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
