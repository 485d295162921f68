"""monokd on one GPU, in one command: what a first GPU session needs to know.

Sections (each one's figures, or its error, in benchmarks/results/gpu_suite.json):

- ``recipes``: every KITTI recipe's training step (the module's, benchmarks/train_speed.py's
  ``Trainee``: forward, losses, distiller, backward, clipping, AdamW) at its input size and
  batch, fp32 and bf16 autocast, eager (and compiled for ``--compile-recipes``): median
  seconds a step and peak memory. Frozen teachers are built untrained from their configs;
  the frames are SynthKITTI renders warped to each recipe's input size.
- ``deform_attn``: MonoDETR's multi-scale deformable attention core
  (monokd.models.ops.deform_attn.ms_deform_attn, pure PyTorch) alone at the KITTI recipe's
  sizes (its encoder's self-attention: every cell of the 4 levels a query), forward + backward
  time and peak memory, eager and ``torch.compile``d; the official CUDA extension
  (``MultiScaleDeformableAttention``) when it is installed.
- ``ddp``: a 2-process DistributedDataParallel step of the MonoDETR recipe (NCCL across two
  GPUs, gloo when there is one device: both ranks share it; --tiny: the synth recipe) against
  the same step in one process.
- ``seed_studies``: the SynthKITTI recipe (configs/monodetr_synth.yaml) trained by 1, 2, 4, ...
  processes on one device at once, each for ``--seed-seconds``: steps a second per process
  and in all, peak memory per process; it stops at ``--max-procs``, when the total no longer
  grows, on an out-of-memory, or when ``--seed-budget-s`` is spent.

    python benchmarks/gpu_suite.py [--steps 10] [--recipes all] [--compile-recipes monodetr]
        [--seed-seconds 15] [--max-procs 16] [--seed-budget-s 120] [--tiny] [--out PATH]

``--tiny``: a minute-free version for a CPU (the tests' run): tiny inputs, one recipe.
Budget on one GPU: about 9 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from monokd.data.synth import generate  # noqa: E402
from _results import write_json  # noqa: E402  (benchmarks/_results.py)
from train_speed import Trainee, batches, cpu_model, recipe  # noqa: E402  (benchmarks/train_speed.py)

# name -> (recipe, {frozen role: the recipe of its untrained model}[, overrides])
KITTI = {
    "monodetr": ("monodetr_kitti.yaml", {}),
    "monodetr_teacher": ("monodetr_teacher_kitti.yaml", {}),
    "add_monodetr": ("add_monodetr_kitti.yaml", {"teacher": "monodetr_teacher_kitti.yaml"}),
    "caddn": ("caddn_kitti.yaml", {}),
    "caddn_teacher": ("caddn_teacher_kitti.yaml", {}),
    "add_caddn": ("add_caddn_kitti.yaml", {"teacher": "caddn_teacher_kitti.yaml"}),
    "patchnet": ("patchnet_kitti.yaml", {}),
    "patchnet_teacher": ("patchnet_teacher_kitti.yaml", {}),
    "add_patchnet": ("add_patchnet_kitti.yaml", {"teacher": "patchnet_teacher_kitti.yaml"}),
    "depth": ("depth_kitti.yaml", {}, ["data.depth_maps=depth_2"]),  # as `monokd depth train` sets
    "lidar_teacher": ("takd_lidar_kitti.yaml", {}),
    "ta": ("takd_ta_kitti.yaml", {}),
    "takd": ("takd_kitti.yaml", {"teacher": "takd_lidar_kitti.yaml", "ta": "takd_ta_kitti.yaml"}),
}
SYNTH = {"monodetr_synth": ("monodetr_synth.yaml", {})}
TINY = {"input_size": [128, 64], "batch_size": 1}
SECTIONS = ("recipes", "deform_attn", "ddp", "seed_studies")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak allocated CUDA memory since the last :func:`reset_peak` (None on a CPU)."""
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def timed(call, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    call()
    sync(device)
    return time.perf_counter() - start


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"


# -- recipes ----------------------------------------------------------------------------------
def recipe_steps(name: str, cfg: dict, root: Path, device: torch.device, steps: int, compiled: bool) -> dict:
    """One recipe's median step and peak memory per variant (fp32, bf16[, compiled])."""
    batch, _ = batches(cfg, root, int(cfg["train"]["batch_size"]))
    row = {"config": f"configs/{KITTI.get(name, SYNTH.get(name, ('?',)))[0]}",
           "input_size": cfg["data"]["input_size"], "batch_size": int(cfg["train"]["batch_size"]),
           "step_s": {}, "peak_gib": {}, "warmup_s": {}, "errors": {}}
    for compile_it in ([False, True] if compiled else [False]):
        trainee = None
        try:
            reset_peak(device)
            trainee = Trainee(cfg, batch, compile_it, device=device)
            for bf16 in (False, True):
                variant = ("bf16" if bf16 else "fp32") + ("_compiled" if compile_it else "")
                try:
                    reset_peak(device)
                    row["warmup_s"][variant] = round(sum(timed(lambda: trainee.step(bf16), device)
                                                         for _ in range(2 if compile_it else 1)), 3)
                    times = [timed(lambda: trainee.step(bf16), device) for _ in range(steps)]
                    row["step_s"][variant] = round(statistics.median(times), 4)
                    row["peak_gib"][variant] = peak_gib(device)
                except Exception as err:  # noqa: BLE001 - reported; the other variants run
                    row["errors"][variant] = error_text(err)
        except Exception as err:  # noqa: BLE001
            row["errors"]["compiled" if compile_it else "eager"] = error_text(err)
        del trainee
        reset_peak(device)
    if not row["errors"]:
        del row["errors"]
    return row


# -- deformable attention -----------------------------------------------------------------------
def attn_sizes(cfg: dict, tiny: bool) -> dict:
    """The encoder's deformable self-attention of the MonoDETR recipe ``cfg``: levels at
    strides 8, 16, 32, 64 of the input, every cell a query."""
    model = cfg["model"]
    width, height = cfg["data"]["input_size"]
    levels = int(model.get("num_feature_levels", 4))
    shapes = [(-(-height // s), -(-width // s)) for s in (8, 16, 32, 64)[:levels]]
    return {"batch": 1 if tiny else int(cfg["train"]["batch_size"]), "shapes": shapes,
            "heads": int(model.get("nheads", 8)), "head_dim": int(model.get("hidden_dim", 256)) // int(model.get("nheads", 8)),
            "points": int(model.get("enc_n_points", 4)), "queries": sum(h * w for h, w in shapes)}


def deform_attn(cfg: dict, device: torch.device, steps: int, compile_it: bool, tiny: bool) -> dict:
    """Forward + backward of ms_deform_attn at the recipe's encoder sizes: eager, compiled,
    the official CUDA extension when installed."""
    from monokd.models.ops.deform_attn import ms_deform_attn

    size = attn_sizes(cfg, tiny)
    n, m, d, p, q = size["batch"], size["heads"], size["head_dim"], size["points"], size["queries"]
    levels = len(size["shapes"])
    g = torch.Generator().manual_seed(0)
    value = torch.randn(n, q, m, d, generator=g).to(device).requires_grad_()
    locations = torch.rand(n, q, m, levels, p, 2, generator=g).to(device).requires_grad_()
    weights = torch.rand(n, q, m, levels * p, generator=g).softmax(-1).view(n, q, m, levels, p).to(device).requires_grad_()
    shapes = torch.tensor(size["shapes"], device=device)
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    out = {"sizes": size, "dtype": "fp32", "impls": {}}

    def run(fn):
        def call():
            result = fn(value, shapes, starts, locations, weights)
            result.sum().backward()
            value.grad = locations.grad = weights.grad = None
        return call

    impls = {"pytorch": ms_deform_attn}
    if compile_it:
        impls["pytorch_compiled"] = torch.compile(ms_deform_attn)
    official = importlib.util.find_spec("MultiScaleDeformableAttention") is not None
    out["official_cuda_extension_installed"] = official
    for name, fn in impls.items():
        try:
            reset_peak(device)
            warm = timed(run(fn), device)
            times = [timed(run(fn), device) for _ in range(steps)]
            out["impls"][name] = {"fwd_bwd_s": round(statistics.median(times), 5), "warmup_s": round(warm, 3),
                                  "peak_gib": peak_gib(device)}
        except Exception as err:  # noqa: BLE001
            out["impls"][name] = {"error": error_text(err)}
    return out


# -- DDP ----------------------------------------------------------------------------------------
def ddp_rank(rank: int, world: int, init: str, backend: str, cfg: dict, root: str, steps: int, results) -> None:
    """One rank of the DDP step: the recipe's model wrapped in DistributedDataParallel."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=world)
    try:
        batch, _ = batches(cfg, Path(root), int(cfg["train"]["batch_size"]))
        trainee = Trainee(cfg, batch, device=device)
        trainee.module.model = DistributedDataParallel(
            trainee.module.model, device_ids=[device.index] if cuda else None,
            find_unused_parameters=bool(cfg["train"].get("find_unused_parameters", False)))
        losses = trainee.module.model.module.losses

        def step():
            model = trainee.module.model
            loss = losses(model(trainee.batch), trainee.batch)["loss"]
            trainee.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainee.module.on_before_optimizer_step(trainee.optimizer)
            trainee.optimizer.step()

        timed(step, device)
        dist.barrier()
        times = [timed(step, device) for _ in range(steps)]
        results.put({"rank": rank, "step_s": statistics.median(times), "device": str(device)})
    except Exception as err:  # noqa: BLE001
        results.put({"rank": rank, "error": error_text(err), "trace": traceback.format_exc()[-1500:]})
    finally:
        dist.destroy_process_group()


def context(device: torch.device):
    """Processes to start: spawned on a GPU (CUDA cannot be forked), forked on a CPU (no
    second import of torch and monokd)."""
    import multiprocessing as mp

    return mp.get_context("spawn" if device.type == "cuda" else "fork")


def ddp(cfg: dict, root: Path, device: torch.device, steps: int) -> dict:
    """A 2-process DDP step of ``cfg`` against the same step in one process."""
    batch, _ = batches(cfg, root, int(cfg["train"]["batch_size"]))
    trainee = Trainee(cfg, batch, device=device)
    timed(trainee.step, device)
    single = statistics.median(timed(trainee.step, device) for _ in range(steps))
    del trainee
    reset_peak(device)
    ctx = context(device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    backend = "nccl" if gpus >= 2 else "gloo"
    with tempfile.TemporaryDirectory(prefix="gpu_suite_ddp_") as tmp:
        init = f"file://{tmp}/rendezvous"
        results = ctx.Queue()
        procs = [ctx.Process(target=ddp_rank, args=(r, 2, init, backend, cfg, str(root), steps, results)) for r in range(2)]
        for proc in procs:
            proc.start()
        ranks = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join(60)
    ranks.sort(key=lambda r: r["rank"])
    out = {"backend": backend, "world_size": 2, "devices": [r.get("device") for r in ranks],
           "batch_per_process": int(cfg["train"]["batch_size"]), "ranks": ranks}
    errors = [r["error"] for r in ranks if "error" in r]
    if errors:
        out["error"] = errors[0]
        return out
    out["step_s"] = round(max(r["step_s"] for r in ranks), 4)
    out["single_process_step_s"] = round(single, 4)
    out["ddp_over_single"] = round(out["step_s"] / single, 3)
    return out


# -- seed studies side by side ------------------------------------------------------------------
def seed_worker(index: int, cfg: dict, root: str, device_name: str, seconds: float, barrier, results) -> None:
    """One seed's training steps on the shared device for ``seconds`` after a warm-up."""
    torch.set_num_threads(1)
    device = torch.device(device_name)
    try:
        batch, _ = batches(cfg, Path(root), int(cfg["train"]["batch_size"]))
        trainee = Trainee(cfg, batch, seed=index, device=device)
        reset_peak(device)
        timed(trainee.step, device)
    except Exception as err:  # noqa: BLE001
        results.put({"index": index, "error": error_text(err)})
        barrier.abort()
        return
    try:
        barrier.wait()
    except Exception:  # noqa: BLE001 - another worker failed
        results.put({"index": index, "error": "aborted: another process failed"})
        return
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds or steps == 0:
        trainee.step()
        steps += 1
    sync(device)
    elapsed = time.perf_counter() - start
    results.put({"index": index, "steps": steps, "seconds": round(elapsed, 3),
                 "steps_per_s": round(steps / elapsed, 4), "peak_gib": peak_gib(device)})


def seed_studies(cfg: dict, root: Path, device: torch.device, seconds: float, max_procs: int, budget_s: float) -> dict:
    """Throughput of 1, 2, 4, ... simultaneous trainings on one device."""
    ctx = context(device)
    rows, start, best, stop = [], time.perf_counter(), 0.0, "max_procs"
    n = 1
    while n <= max_procs:
        results, barrier = ctx.Queue(), ctx.Barrier(n)
        procs = [ctx.Process(target=seed_worker, args=(i, cfg, str(root), str(device), seconds, barrier, results))
                 for i in range(n)]
        for proc in procs:
            proc.start()
        got = [results.get(timeout=600 + seconds) for _ in procs]
        for proc in procs:
            proc.join(60)
        errors = [g["error"] for g in got if "error" in g]
        row = {"processes": n}
        if errors:
            row["error"] = errors[0]
            rows.append(row)
            stop = "error (out of memory?)"
            break
        total = sum(g["steps_per_s"] for g in got)
        row.update({"steps_per_s_each": round(total / n, 4), "steps_per_s_total": round(total, 4),
                    "peak_gib_each": max((g["peak_gib"] or 0) for g in got) if device.type == "cuda" else None})
        rows.append(row)
        if total <= best * 1.02:
            stop = "total no longer grows"
            break
        best = max(best, total)
        if time.perf_counter() - start > budget_s:
            stop = "time budget spent"
            break
        n *= 2
    best_row = max((r for r in rows if "steps_per_s_total" in r), key=lambda r: r["steps_per_s_total"], default=None)
    return {"recipe": "configs/monodetr_synth.yaml", "batch_size": int(cfg["train"]["batch_size"]),
            "seconds_each": seconds, "runs": rows, "stopped": stop,
            "best_processes": best_row["processes"] if best_row else None,
            "speedup_over_one": round(best_row["steps_per_s_total"] / rows[0]["steps_per_s_total"], 3)
            if best_row and "steps_per_s_total" in rows[0] else None}


# -- the suite ----------------------------------------------------------------------------------
def machine(device: torch.device) -> dict:
    info = {"device": str(device), "cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "platform": platform.platform(), "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                     "gpus": torch.cuda.device_count(), "bf16_supported": torch.cuda.is_bf16_supported()})
    return info


def names(text: str, known: dict) -> list[str]:
    if text in ("", "none"):
        return []
    chosen = list(known) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise SystemExit(f"gpu_suite: unknown recipe(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, one recipe, a few steps: a CPU's run")
    parser.add_argument("--steps", type=int, default=None, help="timed steps a variant (default 10; --tiny 1)")
    parser.add_argument("--recipes", default=None, help=f"comma-separated or all (default all; --tiny monodetr): {','.join(KITTI)}")
    parser.add_argument("--compile-recipes", default=None, help="recipes also timed compiled (default monodetr; --tiny none)")
    parser.add_argument("--seed-seconds", type=float, default=None, help="seconds each seed process trains (default 15)")
    parser.add_argument("--max-procs", type=int, default=None, help="most seed processes at once (default 16; --tiny 2)")
    parser.add_argument("--seed-budget-s", type=float, default=120.0, help="stop adding seed processes after this")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gpu_suite.json"))
    args = parser.parse_args(argv)
    tiny = args.tiny
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    steps = args.steps or (1 if tiny else 10)
    recipes = names(args.recipes or ("monodetr" if tiny else "all"), KITTI)
    compiled = names(args.compile_recipes or ("none" if tiny else "monodetr"), KITTI)
    sections = [s for s in args.sections.split(",") if s]
    size = TINY if tiny else None
    doc = {"machine": machine(device), "tiny": tiny, "steps": steps, "sections": {}}
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        frames = 2 if tiny else 16
        root = generate(Path(tmp) / "synth", num_train=frames, num_val=1, seed=0,
                        **({"width": 160, "height": 64} if tiny else {}))
        work = Path(tmp)

        def section(name: str, build):
            if name not in sections:
                return
            start = time.perf_counter()
            try:
                result = build()
            except Exception as err:  # noqa: BLE001 - one section's failure does not stop the others
                result = {"error": error_text(err), "trace": traceback.format_exc()[-2000:]}
            result["wall_s"] = round(time.perf_counter() - start, 1)
            doc["sections"][name] = result
            print(f"{name}: {result['wall_s']} s" + (f" ERROR {result['error']}" if "error" in result else ""), flush=True)

        monodetr = recipe("monodetr", root, work, False, KITTI, size)
        def all_recipes() -> dict:
            rows = {}
            for name in recipes:
                rows[name] = recipe_steps(name, recipe(name, root, work, False, KITTI, size), root, device, steps,
                                          name in compiled)
                print(f"  {name}: {rows[name]['step_s']} {rows[name].get('errors', '')}", flush=True)
            return rows

        section("recipes", all_recipes)
        section("deform_attn", lambda: deform_attn(monodetr, device, steps, not tiny, tiny))
        synth = recipe("monodetr_synth", root, work, False, SYNTH, size)
        section("ddp", lambda: ddp(synth if tiny else monodetr, root, device, steps))
        section("seed_studies", lambda: seed_studies(synth, root, device, args.seed_seconds or (0.5 if tiny else 15.0),
                                                     args.max_procs or (2 if tiny else 16), args.seed_budget_s))
    doc["wall_s"] = round(time.perf_counter() - wall, 1)
    write_json(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
