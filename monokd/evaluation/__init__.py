"""KITTI evaluation with the official devkit's rules (evaluate_object.cpp): AP_R11 / AP_R40
of 2-D boxes, bird's-eye view, 3-D boxes and AOS. See docs/evaluation.md."""

from monokd.evaluation.kitti_ap import DEFAULT_CLASSES, evaluate, evaluate_tables
from monokd.evaluation.report import EvalResult, flat_key
from monokd.evaluation.results import evaluate_dirs, load_dirs, read_results, write_results

__all__ = ["DEFAULT_CLASSES", "EvalResult", "evaluate", "evaluate_dirs", "evaluate_tables",
           "flat_key", "load_dirs", "read_results", "write_results"]
