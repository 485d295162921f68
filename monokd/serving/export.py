"""Exporting the student alone (``monokd export``), without teacher or adapters.

ADD's adapters and its teacher exist only in training, so a distilled student costs exactly
what the baseline costs at inference. From a checkpoint of ``monokd train`` (distilled or
not) this writes to ``--out``:

- ``student.safetensors``: the detector's state dict (the baseline's parameter names);
- ``config.yaml``: the run's config without its ``distill`` section (a baseline recipe);
- ``student.ckpt``: a baseline-style checkpoint (``state_dict`` keys ``model.<name>``,
  ``hyper_parameters["cfg"]``) that ``monokd evaluate --ckpt`` / ``monokd predict`` load like
  any baseline checkpoint;
- ``student.onnx`` (unless ``--no-onnx``): opset 17 (the TorchScript exporter: it honours
  the opset, while the torch.export-based one cannot down-convert grid_sample graphs to 17),
  or the detector's ``onnx_opset`` if higher (CaDDN: 20, the first with a 5-D GridSample),
  inputs ``images`` (B, 3, H, W), ``P2`` (B, 3, 4) and ``lidar_to_rect`` (B, 4, 4) at the
  recipe's input size with a fixed batch size (an input the detector does not read is
  pruned), outputs the raw ``pred_*`` heads in name order; checked against PyTorch with
  onnxruntime;
- ``export.json``: what was written, parameter count, the ONNX check's max abs difference.

All or nothing: the files are written to a hidden folder inside ``--out`` and moved into it
only when every one is written, so a failed export leaves ``--out`` as it was, and a
successful one leaves no earlier export's file (a ``student.onnx`` the new student lacks).
An ``--out`` holding files export did not write (a ``config.yaml`` of the user's) is refused
before anything is read, unless ``--overwrite``; export rewrites its own.
A detector that reads more than an image (PatchNet: a depth map and 2-D boxes; a teacher fed
ground truth; monokd/serving/servable.py) has no ONNX model: ``export`` refuses it before
writing anything and names ``--no-onnx``, which writes the other files. Every file gets the
mode the umask gives (safetensors itself writes 0600).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from monokd.config import save_config
from monokd.data.dataset import data_config
from monokd.training.checkpoint import (MODEL_PREFIX, check_state_dict, checkpoint_config, model_state, read_checkpoint,
                                       student_state)
from monokd.serving.servable import unserved
from monokd.atomic import write_error
from monokd.errors import ConfigError, MonokdError
from monokd.models import build_detector
from monokd.outputs import check_output, mark_output


def student_config(cfg: dict) -> dict:
    """The run's config as a baseline recipe (the ``distill`` section removed)."""
    out = copy.deepcopy(cfg)
    out.pop("distill", None)
    return out


def _default_build(cfg: dict) -> nn.Module:
    return build_detector(cfg)


def export_student(ckpt: str | Path, out_dir: str | Path, cfg: dict | None = None,
                   build: Callable[[dict], nn.Module] | None = None, onnx: bool = True,
                   opset: int = 17, batch_size: int = 1, overrides: list[str] | None = None,
                   overwrite: bool = False) -> dict:
    """Write the student of ``ckpt`` to ``out_dir`` (see the module docstring); returns the
    report. ``overrides`` (key=value) apply to the checkpoint's config when ``cfg`` is None.
    An ``out_dir`` holding files export did not write is a ConfigError unless ``overwrite``
    (monokd.outputs)."""
    check_output(out_dir, "export", overwrite)
    checkpoint = read_checkpoint(ckpt)
    cfg = student_config(cfg if cfg is not None else checkpoint_config(checkpoint, ckpt, overrides))
    state = student_state(model_state(checkpoint))
    model = (build or _default_build)(cfg)
    check_state_dict(model, state, source=f"{ckpt} (student)")
    model.load_state_dict(state)
    model.eval()

    if onnx and unserved(model, cfg):
        raise ConfigError(f"{ckpt}: {unserved(model, cfg)}; its ONNX model is not supported yet: pass --no-onnx "
                          "to write student.safetensors, student.ckpt and config.yaml")
    out_dir = Path(out_dir)
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]  # removed again on failure
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        report = _write_student(model, cfg, checkpoint, str(ckpt), staging, out_dir, onnx, opset, batch_size)
        mark_output(out_dir, "export")
        for name in (*OUTPUT_FILES, "export.json"):  # the report last: it says the export is whole
            if (staging / name).exists():
                os.replace(staging / name, out_dir / name)
            elif (out_dir / name).exists():  # an earlier export's (student.onnx, then --no-onnx)
                (out_dir / name).unlink()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # deepest first; only folders this call made, and only if empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return report


OUTPUT_FILES = ("student.safetensors", "config.yaml", "student.ckpt", "student.onnx")


def _umask_mode(path: Path) -> None:
    """Give ``path`` the mode a new file gets (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _write_student(model: nn.Module, cfg: dict, checkpoint: dict, source: str, staging: Path, out_dir: Path,
                   onnx: bool, opset: int, batch_size: int) -> dict:
    """Write every file to ``staging``; the report names them where they will lie, in ``out_dir``."""
    from safetensors.torch import save_file

    # clones: safetensors refuses tensors that share storage
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with _staged(staging, out_dir, "student.safetensors") as path:
        save_file(tensors, str(path), metadata={"source": source})
    _umask_mode(staging / "student.safetensors")
    with _staged(staging, out_dir, "config.yaml") as path:
        save_config(cfg, path)
    baseline = {"state_dict": {MODEL_PREFIX + k: v for k, v in tensors.items()}, "hyper_parameters": {"cfg": cfg}}
    for key in ("epoch", "global_step", "pytorch-lightning_version", "provenance"):
        if key in checkpoint:
            baseline[key] = checkpoint[key]
    with _staged(staging, out_dir, "student.ckpt") as path:
        torch.save(baseline, path)
    report = {"safetensors": str(out_dir / "student.safetensors"), "config": str(out_dir / "config.yaml"),
              "checkpoint": str(out_dir / "student.ckpt"), "tensors": len(tensors),
              "parameters": sum(p.numel() for p in model.parameters())}
    if onnx:
        images, P2 = example_inputs(cfg, batch_size)
        lidar_to_rect = example_lidar_to_rect(batch_size)
        opset = max(opset, int(getattr(model, "onnx_opset", 0)))
        with _staged(staging, out_dir, "student.onnx") as path:
            names = export_onnx(model, path, images, P2, opset, lidar_to_rect)
        report.update(onnx=str(out_dir / "student.onnx"), onnx_opset=opset, onnx_outputs=names,
                      onnx_max_abs_diff=onnx_max_abs_diff(model, path, images, P2, lidar_to_rect))
    with _staged(staging, out_dir, "export.json") as path:
        path.write_text(json.dumps(report, indent=2))
    return report


@contextmanager
def _staged(staging: Path, out_dir: Path, name: str) -> Iterator[Path]:
    """Yields ``staging/name`` to write; a failed write (a full disk: torch.save, safetensors
    and the ONNX exporter each say so in their own words) is reported by
    :func:`monokd.atomic.write_error` naming ``out_dir/name``, the file the user asked for."""
    try:
        yield staging / name
    except Exception as err:
        if isinstance(err, MonokdError):
            raise
        if isinstance(err, OSError):  # it names the staging copy
            err = OSError(err.errno, err.strerror or str(err))
        reported = write_error(err, out_dir / name)
        if reported is err and not isinstance(err, OSError):
            raise
        raise reported from err


class HeadsOnly(nn.Module):
    """(images, P2[, lidar_to_rect]) -> the detector's raw ``pred_*`` tensors, in name order
    (ONNX has no dicts)."""

    def __init__(self, detector: nn.Module, names: list[str]):
        super().__init__()
        self.detector = detector
        self.names = names

    def forward(self, images: torch.Tensor, P2: torch.Tensor,
                lidar_to_rect: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        outputs = self.detector(_batch(images, P2, lidar_to_rect))
        return tuple(outputs[name] for name in self.names)


def _batch(images, P2, lidar_to_rect=None) -> dict:
    batch = {"images": images, "P2": P2}
    if lidar_to_rect is not None:
        batch["lidar_to_rect"] = lidar_to_rect
    return batch


def example_lidar_to_rect(batch_size: int = 1) -> torch.Tensor:
    """(B, 4, 4) a KITTI-like LiDAR -> rectified camera transform (axes permuted, the camera
    0.08 m below and 0.27 m ahead of the LiDAR)."""
    matrix = torch.tensor([[0.0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27], [0, 0, 0, 1]])
    return matrix.expand(batch_size, 4, 4).clone()


def head_names(outputs: dict) -> list[str]:
    """The top-level ``pred_*`` tensors of a detector's outputs, sorted."""
    names = sorted(k for k, v in outputs.items() if k.startswith("pred_") and isinstance(v, torch.Tensor))
    if not names:
        raise ValueError("export: the detector's outputs hold no pred_* tensor")
    return names


def example_inputs(cfg: dict, batch_size: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random normalised images (B, 3, H, W) at the recipe's input size and a KITTI-like P2."""
    width, height = (int(s) for s in data_config(cfg)["input_size"])
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, height, width, generator=gen)
    focal = 0.58 * width  # KITTI: f = 721 px for 1242 px
    P2 = torch.tensor([[focal, 0.0, width / 2, 0.0], [0.0, focal, height / 2, 0.0], [0.0, 0.0, 1.0, 0.0]])
    return images, P2.expand(batch_size, 3, 4).clone()


def export_onnx(model: nn.Module, path: str | Path, images: torch.Tensor, P2: torch.Tensor,
                opset: int = 17, lidar_to_rect: torch.Tensor | None = None) -> list[str]:
    """torch.onnx.export of :class:`HeadsOnly` with the TorchScript exporter; returns the
    output names."""
    with torch.no_grad():
        names = head_names(model(_batch(images, P2, lidar_to_rect)))
    wrapper = HeadsOnly(model, names).eval()
    inputs = (images, P2) if lidar_to_rect is None else (images, P2, lidar_to_rect)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are fixed on purpose
        torch.onnx.export(wrapper, inputs, str(path), input_names=["images", "P2", "lidar_to_rect"][:len(inputs)],
                          output_names=names, opset_version=opset, dynamo=False)
    return names


def onnx_max_abs_diff(model: nn.Module, path: str | Path, images: torch.Tensor, P2: torch.Tensor,
                      lidar_to_rect: torch.Tensor | None = None) -> float:
    """Max abs difference between onnxruntime and PyTorch over every output."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        outputs = model(_batch(images, P2, lidar_to_rect))
    given = {"images": images.numpy(), "P2": P2.numpy()}
    if lidar_to_rect is not None:
        given["lidar_to_rect"] = lidar_to_rect.numpy()
    feeds = {i.name: given[i.name] for i in session.get_inputs()}  # an unused input is pruned
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, feeds)
    return max(float((torch.from_numpy(g) - outputs[n]).abs().max()) for n, g in zip(names, got))
