"""Reading weight files: monokd checkpoints, backbone weights, exported students.

One reader for every file of tensors monokd loads, so that each way such a file can be wrong
is one line naming it (:class:`monokd.errors.CheckpointMismatchError`), never a traceback:

- missing;
- not a file of tensors, or cut short (a partial download, a full disk): "not a readable ...";
- a pickle of Python objects (e.g. a whole ``nn.Module`` saved with ``torch.save(model)``):
  loading it would run arbitrary code, so only tensors and plain containers are read
  (``torch.load(weights_only=True)``), and the message says to save ``state_dict()``.

``.safetensors`` files are read with safetensors, anything else with torch.load.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from monokd.errors import CheckpointMismatchError


def read_weights(path: str | Path, what: str = "weights file") -> dict:
    """The dict stored in ``path`` (tensors on the CPU). ``what`` names the file's role in
    the messages ("checkpoint", "backbone weights file (model.backbone.weights)")."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointMismatchError(f"{path}: {what} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not _is_pickle_file(path):
            raise CheckpointMismatchError(f"{path}: not a readable {what}, truncated or of another format "
                                          "(not a file of torch.save)") from None
        if "weights only" in str(err).lower():
            raise CheckpointMismatchError(
                f"{path}: the {what} holds pickled Python objects (e.g. a whole nn.Module), not only tensors; "
                "save the model's state_dict() instead (torch.save(model.state_dict(), path))") from None
        raise CheckpointMismatchError(f"{path}: not a readable {what} ({_first_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - torch and safetensors raise many kinds; each is one line
        raise CheckpointMismatchError(f"{path}: not a readable {what}, truncated or of another format "
                                      f"({_first_line(err)})") from None


def _is_pickle_file(path: Path) -> bool:
    """Whether ``path`` is what ``torch.save`` writes: a zip archive, or a bare pickle (protocol
    2+ starts with 0x80); torch reports any other file as a refused pickle too."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _first_line(err: BaseException, limit: int = 160) -> str:
    """The first sentence of ``err``'s text (torch's go on for lines of advice)."""
    text = str(err).strip()
    first = text.splitlines()[0].split(". ")[0] if text else type(err).__name__
    return first if len(first) <= limit else first[:limit - 3] + "..."
