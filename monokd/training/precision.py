"""The training precision: ``train.precision`` (or ``monokd train --precision``) resolved to
what Lightning runs.

``auto`` is bf16 autocast where the hardware computes bf16 natively (a CUDA device that
supports it; a CPU with AVX512_BF16 or AMX-BF16, where bf16 convolutions run ~1.46x faster
than fp32 on a MonoDETR step) and fp32 elsewhere, said in one line. On CPUs without native
bf16, oneDNN emulates it, slower than fp32.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

# monokd's names -> Lightning's
PRECISIONS = {"32": "32-true", "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}
CHOICES = (*PRECISIONS, "auto")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the CPU's flags (Linux ``/proc/cpuinfo``) include native bf16 arithmetic;
    False where the file is absent (other systems: fp32, the safe choice)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(flag in flags for flag in CPU_BF16_FLAGS)
    return False


def resolve_precision(name: str, cuda: bool | None = None, cpu_bf16: bool | None = None,
                      say=None) -> str:
    """Lightning's precision for monokd's ``name`` (one of :data:`CHOICES`). ``auto``:
    ``bf16-mixed`` on a bf16-capable CUDA device or CPU, else ``32-true`` and one line to
    ``say`` (default: stderr). ValueError for an unknown name."""
    name = str(name)
    if name in PRECISIONS:
        return PRECISIONS[name]
    if name != "auto":
        raise ValueError(f"precision {name!r}: expected one of {', '.join(CHOICES)}")
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda:
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        supported = False
    else:
        supported = cpu_has_bf16() if cpu_bf16 is None else cpu_bf16
    if supported:
        return "bf16-mixed"
    (say or (lambda line: print(line, file=sys.stderr)))(
        "train.precision auto: this " + ("GPU" if cuda else "CPU") + " has no native bf16; training in fp32")
    return "32-true"
