"""Which detectors ``monokd predict`` and ``monokd export`` can serve: those that read an image
alone.

``predict`` feeds a detector what a folder of images and calib files gives: ``images``
(B, 3, H, W), ``P2`` (B, 3, 4) and ``lidar_to_rect`` (B, 4, 4) (the contract's IMAGE_INPUTS);
the ONNX model of ``export`` has exactly these inputs. A detector declares the batch keys its
``forward`` reads (``inputs``) and those that carry ground truth or LiDAR
(``privileged_inputs``, a teacher's), monokd/models/contract.py: PatchNet reads a depth map and
2-D boxes per image, the LiDAR teacher a sweep, a teacher fed ground truth its labels or
depth_2 maps. Both commands ask :func:`unserved` before they write anything and refuse in one
line (a ``ConfigError``).

A detector also declares ``decode_threshold``: (config key, score) below which its ``decode``
drops a box; predict names it (:func:`decode_threshold`).
"""

from __future__ import annotations

from torch import nn

from monokd.models.contract import IMAGE_INPUTS

# what a batch key is, in words, and the config key that makes the dataset load it
_WORDS = {
    "depth_pred": "a depth map (data.depth_pred_dir)",
    "depth_maps": "a depth_2 map (data.depth_maps)",
    "proposals": "2-D boxes (data.proposals)",
    "points": "a LiDAR sweep (data.load_points)",
    "targets": "its labels",
}


def extra_inputs(model: nn.Module) -> list[str]:
    """The batch keys ``model`` reads beyond images, P2 and lidar_to_rect."""
    return [key for key in getattr(model, "inputs", IMAGE_INPUTS) if key not in IMAGE_INPUTS]


def unserved(model: nn.Module, cfg: dict) -> str | None:
    """What ``model`` needs that an image and its calib do not give, in words (None: nothing)."""
    extra = extra_inputs(model)
    if not extra:
        return None
    words = [_WORDS.get(key, f"batch['{key}']") for key in extra]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    teacher = " (a teacher: it reads ground truth or LiDAR)" if getattr(model, "privileged_inputs", ()) else ""
    return f"{type(model).__name__}{teacher} needs {listed} per image besides the image"


def decode_threshold(model: nn.Module) -> tuple[str, float] | None:
    """(config key, score) of the decode threshold the model declares; None when it declares none."""
    threshold = getattr(model, "decode_threshold", None)
    return None if threshold is None else (str(threshold[0]), float(threshold[1]))
