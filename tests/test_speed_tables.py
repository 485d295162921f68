"""benchmarks/speed_tables.py: train_speed.json's rows in markdown, written between markers."""

from __future__ import annotations

import pytest

from tests.helpers import benchmark_module

DOC = {
    "machine": {"cpu": "AMD EPYC", "threads": 1, "torch": "2.13.0", "bf16_native": True, "loadavg_start": [0.1, 0, 0]},
    "setup": {"steps": 3, "quick": False},
    "models": {"monodetr": {"batch_size": 8, "input_size": [416, 128],
                            "step_s": {"fp32": 1.77, "bf16": 1.22, "fp32_compiled": 2.0},
                            "bf16_speedup": 1.451, "fp32_compiled_speedup": 0.885, "compile_s": {"fp32_compiled": 200.0},
                            "optimizer_update_s": {"default": 0.25, "fused": 0.08},
                            "errors": {"bf16_compiled": "RuntimeError: x"}}},
    "side_by_side": {"monodetr+add": {"alone_1_thread_s": {"monodetr": 1.0, "add": 2.0},
                                      "alone_2_threads_s": {"monodetr": 0.6, "add": 1.2},
                                      "alone_2_threads_passive_s": {"monodetr": 0.7, "add": 1.3},
                                      "side_by_side_s": [1.1, 2.4], "slowdown": [1.1, 1.2]}},
}


def test_rows_of_train_speed():
    with benchmark_module("speed_tables") as tables:
        lines = tables.train_speed_lines(DOC)
    assert "| monodetr | 8, 416x128 | 1.77 | 1.22 | 1.45x | 2.00 | - | 0.89x / - | 200.00 / - | 0.25 / 0.08 |" in lines
    assert any("bf16_compiled failed: RuntimeError: x" in line for line in lines)
    assert "| monodetr+add | 1.00 / 2.00 | 0.60 / 0.70; 1.20 / 1.30 | 1.10 / 2.40 | 1.10x / 1.20x |" in lines


def test_tables_go_between_the_markers_only():
    with benchmark_module("speed_tables") as tables:
        text = f"intro\n{tables.BEGIN}\nold\n{tables.END}\nafter\n"
        assert tables.replace_between_markers(text, "new\n", "doc") == f"intro\n{tables.BEGIN}\nnew\n{tables.END}\nafter\n"
        with pytest.raises(SystemExit, match="doc: no"):
            tables.replace_between_markers("no markers\n", "new\n", "doc")


def test_rows_of_the_profile():
    ops = [{"op": f"op{k}", "ms": 10.0 - k, "share": (10.0 - k) / 100, "calls": 1.0} for k in range(10)]
    doc = {"machine": {"cpu": "AMD EPYC", "threads": 1, "loadavg_start": [0.5, 0, 0]}, "setup": {"steps": 2, "quick": False},
           "models": {"caddn": {"fp32": {"self_cpu_ms": 1570.0, "top_ops": ops},
                                "bf16": {"self_cpu_ms": 1003.0, "top_ops": ops[1:]}}}}
    with benchmark_module("speed_tables") as tables:
        lines = tables.train_profile_lines(doc)
    assert "| caddn | 1.57 / 1.00 | op0 10.0 %, op1 9.0 %, op2 8.0 %, op3 7.0 %, op4 6.0 %, op5 5.0 % | " \
           "op1 9.0 %, op2 8.0 %, op3 7.0 %, op4 6.0 % |" in lines
    assert "load average 0.5 at the start, 2 steps after one warm-up" in lines[0]
