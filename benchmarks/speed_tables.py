"""The markdown tables of benchmarks/train_speed.py's JSON (step times; with ``--profile-out``,
where each step's time goes) and benchmarks/gpu_suite.py's, for docs/training.md's "Speed" section.

    python benchmarks/speed_tables.py [--train-speed PATH] [--train-profile PATH] [--gpu-suite PATH]
        [--write docs/training.md]

Prints the tables; ``--write FILE`` puts them between FILE's ``<!-- speed-tables:begin -->``
and ``<!-- speed-tables:end -->`` lines (the rest of the file untouched; an absent JSON leaves
its table out).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BEGIN, END = "<!-- speed-tables:begin -->", "<!-- speed-tables:end -->"
VARIANTS = ("fp32", "bf16", "fp32_compiled", "bf16_compiled")


def seconds(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def train_speed_lines(doc: dict) -> list[str]:
    """Step time per model and variant, the speed-ups, the compile times; the side-by-side pairs."""
    m = doc["machine"]
    lines = [f"CPU step times (`benchmarks/train_speed.py`, {m['cpu']}, {m['threads']} thread, torch {m['torch']}, "
             f"bf16 native: {m['bf16_native']}; load average {m['loadavg_start'][0]} at the start; "
             f"median of {doc['setup']['steps']} steps{', --quick sizes' if doc['setup']['quick'] else ''}):", "",
             "| model | batch, input | fp32 s | bf16 s | bf16 speed-up | fp32 compiled s | bf16 compiled s | "
             "compiled speed-up (fp32 / bf16) | compile s (fp32 / bf16) | AdamW update s (default / fused) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, row in doc["models"].items():
        step = row["step_s"]
        compile_s = row.get("compile_s", {})
        compiled = " / ".join(ratio(row.get(f"{v}_compiled_speedup")) for v in ("fp32", "bf16"))
        lines.append(f"| {name} | {row['batch_size']}, {row['input_size'][0]}x{row['input_size'][1]} | "
                     + " | ".join(seconds(step.get(v)) for v in VARIANTS[:2]) + f" | {ratio(row.get('bf16_speedup'))} | "
                     + " | ".join(seconds(step.get(v)) for v in VARIANTS[2:]) + f" | {compiled} | "
                     + " / ".join(seconds(compile_s.get(f"{v}_compiled")) for v in ("fp32", "bf16")) + " | "
                     + " / ".join(seconds(row.get("optimizer_update_s", {}).get(k)) for k in ("default", "fused")) + " |")
        for variant, error in row.get("errors", {}).items():
            lines.append(f"|  | {variant} failed: {error} ||||||||| ")
    if doc.get("side_by_side"):
        lines += ["", "One training alone against two side by side (separate processes, fp32, eager):", "",
                  "| pair | alone, 1 thread s | alone, 2 threads s (spinning / PASSIVE) | side by side, 1 thread each s | "
                  "slowdown of each |", "|---|---|---|---|---|"]
        for pair, row in doc["side_by_side"].items():
            a, b = pair.split("+")
            alone = " / ".join(seconds(row["alone_1_thread_s"][x]) for x in dict.fromkeys((a, b)))
            two = "; ".join(f"{seconds(row['alone_2_threads_s'][x])} / {seconds(row['alone_2_threads_passive_s'][x])}"
                            for x in dict.fromkeys((a, b)))
            lines.append(f"| {pair} | {alone} | {two} | {' / '.join(map(seconds, row['side_by_side_s']))} | "
                         f"{' / '.join(map(ratio, row['slowdown']))} |")
    return lines


def _ops(ops: list[dict], count: int) -> str:
    return ", ".join(f"{o['op']} {100 * o['share']:.1f} %" for o in ops[:count])


def train_profile_lines(doc: dict, fp32_ops: int = 6, bf16_ops: int = 4) -> list[str]:
    """Per model: the self CPU time of a step in fp32 and bf16 and its top ops by share."""
    m = doc["machine"]
    lines = [f"Where a step's time goes (`benchmarks/train_speed.py --profile all --profile-out ...`: torch.profiler, "
             f"{m['cpu']}, {m['threads']} thread, load average {m['loadavg_start'][0]} at the start, "
             f"{doc['setup']['steps']} steps after one warm-up{', --quick sizes' if doc['setup']['quick'] else ''}; "
             "top ops by self CPU time, each with its share of the step's):", "",
             "| model | self CPU s a step (fp32 / bf16) | fp32: top ops | bf16: top ops |", "|---|---|---|---|"]
    for name, row in doc["models"].items():
        lines.append(f"| {name} | {row['fp32']['self_cpu_ms'] / 1000:.2f} / {row['bf16']['self_cpu_ms'] / 1000:.2f} | "
                     f"{_ops(row['fp32']['top_ops'], fp32_ops)} | {_ops(row['bf16']['top_ops'], bf16_ops)} |")
    return lines


def gpu_suite_lines(doc: dict) -> list[str]:
    """The recipes' step time and peak memory, the attention, DDP and the seed processes."""
    m, sections = doc["machine"], doc["sections"]
    where = m.get("gpu") or m["device"]
    lines = [f"`benchmarks/gpu_suite.py` on {where} (torch {m['torch']}{', --tiny' if doc['tiny'] else ''}):", ""]
    if "recipes" in sections and "error" not in sections["recipes"]:
        lines += ["| recipe | batch, input | fp32 s | bf16 s | fp32 compiled s | bf16 compiled s | peak GiB fp32 / bf16 |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for name, row in sections["recipes"].items():
            if not isinstance(row, dict) or "step_s" not in row:
                continue
            peak = row["peak_gib"]
            lines.append(f"| {name} | {row['batch_size']}, {row['input_size'][0]}x{row['input_size'][1]} | "
                         + " | ".join(seconds(row["step_s"].get(v)) for v in VARIANTS)
                         + f" | {seconds(peak.get('fp32'))} / {seconds(peak.get('bf16'))} |")
        lines.append("")
    attn = sections.get("deform_attn", {})
    for impl, row in attn.get("impls", {}).items():
        lines.append(f"- deformable attention ({impl}), forward + backward at the encoder's {attn['sizes']['queries']} "
                     f"queries x batch {attn['sizes']['batch']}: "
                     + (f"{row['fwd_bwd_s'] * 1000:.1f} ms, peak {seconds(row['peak_gib'])} GiB"
                        if "fwd_bwd_s" in row else f"failed: {row['error']}"))
    ddp = sections.get("ddp", {})
    if "step_s" in ddp:
        lines.append(f"- DDP, 2 processes ({ddp['backend']}): {seconds(ddp['step_s'])} s a step against "
                     f"{seconds(ddp['single_process_step_s'])} s in one process ({ratio(ddp['ddp_over_single'])})")
    seeds = sections.get("seed_studies", {})
    if seeds.get("runs"):
        runs = ", ".join(f"{r['processes']}: {r['steps_per_s_total']:.2f}" for r in seeds["runs"] if "steps_per_s_total" in r)
        lines.append(f"- seed processes on one device (processes: steps a second in all): {runs}; best "
                     f"{seeds['best_processes']} ({ratio(seeds['speedup_over_one'])} one's); stopped: {seeds['stopped']}")
    for name, section in sections.items():
        if "error" in section:
            lines.append(f"- {name} failed: {section['error']}")
    return lines


def tables(train_speed: Path, gpu_suite: Path, train_profile: Path | None = None) -> str:
    parts = []
    for path, render in ((train_speed, train_speed_lines), (train_profile, train_profile_lines),
                         (gpu_suite, gpu_suite_lines)):
        if path is not None and path.is_file():
            parts.append("\n".join(render(json.loads(path.read_text()))))
    return "\n\n".join(parts) + "\n"


def replace_between_markers(text: str, block: str, where: str) -> str:
    """``text`` with the lines between :data:`BEGIN` and :data:`END` replaced by ``block``;
    SystemExit naming ``where`` when the markers are missing."""
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"speed_tables: {where}: no '{BEGIN}' ... '{END}' lines to write between")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-speed", default=str(RESULTS / "train_speed.json"))
    parser.add_argument("--train-profile", default=str(RESULTS / "train_profile.json"))
    parser.add_argument("--gpu-suite", default=str(RESULTS / "gpu_suite.json"))
    parser.add_argument("--write", metavar="FILE", help="put the tables between FILE's markers")
    args = parser.parse_args(argv)
    block = tables(Path(args.train_speed), Path(args.gpu_suite), Path(args.train_profile))
    print(block, end="")
    if args.write:
        sys.path.insert(0, str(REPO))
        from monokd.atomic import write_text

        path = Path(args.write)
        write_text(path, replace_between_markers(path.read_text(), block, str(path)))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
