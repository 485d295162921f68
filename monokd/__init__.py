"""monokd: depth-knowledge distillation for monocular 3D object detection."""

__version__ = "0.1.0"
