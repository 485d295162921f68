"""SynthKITTI: a ray-cast synthetic dataset written in the exact KITTI layout."""

from monokd.data.synth.render import DEFAULT_SIZE, Frame, render_frame
from monokd.data.synth.write import generate

__all__ = ["DEFAULT_SIZE", "Frame", "generate", "render_frame"]
