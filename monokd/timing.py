"""Durations as people read them."""

from __future__ import annotations


def hms(seconds: float) -> str:
    """``seconds`` as ``h:mm:ss``, rounded to the second (``3725.4`` -> ``"1:02:05"``)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
