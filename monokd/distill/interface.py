"""What a detector exposes to a distiller.

A distiller wraps a student and a frozen teacher of the same architecture and sees them only
through this interface: it never reaches into a model's modules. A detector provides

- ``distill_spec``: a :class:`DistillSpec` (channels and strides of the distilled features,
  the space each level lives in, width and depth of the decoder);
- ``outputs["distill"]["features"]``: list of (B, C_k, H_k, W_k) intermediate features (for
  MonoDETR: the multi-scale maps that enter the transformer encoder);
- optionally ``outputs["distill"]["sources"]``: other named feature lists a distiller may read
  instead (ADD's ``distill.feature.source``), each described by ``distill_spec.sources[name]``
  = (channels, strides) (for MonoDETR: ``depth_memory``, the depth-aware memory the teacher's
  GT depth enters);
- ``outputs["distill"]["queries"]``: (L, B, Q, C) decoder query states (absent without a decoder);
- ``match_foreground(outputs, batch)``: the detector's own Hungarian matcher applied to the
  outputs given, one ``(query_idx, target_idx)`` pair of (M,) long tensors per image;
- for a level in the ``"given"`` space: ``outputs["distill"]["masks"][k]`` (B, H_k, W_k) bool
  (M^k) and ``outputs["distill"]["pe_depth"][k]`` (B, 1, H_k, W_k) metres (the depth that feeds
  the 3D-aware PE; 0 = background); other levels' entries may be None; for the "estimated"
  PE, ``outputs["distill"]["estimated_pe_depth"][k]`` of the same shape, from the detector's
  own depth;
- optionally the depth the detector estimates, for ADD's "estimated" positional encoding:
  either a method ``estimated_depth_map(outputs) -> (B, 1, h, w)`` in metres, or the
  tensor ``outputs["distill"]["depth_map"]`` of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from monokd.errors import ConfigError

FEATURE_SPACES = ("image", "bev", "given")


@dataclass(frozen=True)
class DistillSpec:
    """Shapes a distiller needs to build its adapters before seeing any output.

    feature_channels[k] and feature_strides[k] describe ``outputs["distill"]["features"][k]``;
    ``query_dim`` is C of the decoder query states (None without a decoder) and
    ``num_decoder_layers`` is L (0 without a decoder).

    ``feature_spaces[k]`` (None = every level ``"image"``) says where level k lives, hence how
    a distiller builds its foreground mask M^k and the depth of its 3D-aware PE:

    - ``"image"``: an image-plane map; stride = input pixels per cell (masks from the 2-D GT
      boxes);
    - ``"bev"``: a bird's-eye-view map of ``bev_grid`` (a ``monokd.geometry.grid.BEVGrid``);
      stride = grid cells per map cell (masks from the GT boxes' BEV footprints);
    - ``"given"``: the detector supplies both in ``outputs["distill"]["masks"|"pe_depth"][k]``
      (stride unused).

    ``sources`` maps the name of each optional feature list in ``outputs["distill"]["sources"]``
    to its (channels, strides), as feature_channels / feature_strides do for ``features``; its
    maps live in the image plane (stride = input pixels per cell).
    """

    feature_channels: list[int]
    feature_strides: list[int]
    query_dim: int | None
    num_decoder_layers: int
    feature_spaces: list[str] | None = None
    bev_grid: Any = None
    sources: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.feature_channels) != len(self.feature_strides):
            raise ValueError(f"DistillSpec: {len(self.feature_channels)} feature_channels but "
                             f"{len(self.feature_strides)} feature_strides")
        if (self.query_dim is None) != (self.num_decoder_layers == 0):
            raise ValueError("DistillSpec: query_dim must be None exactly when num_decoder_layers == 0")
        if self.feature_spaces is not None:
            if len(self.feature_spaces) != len(self.feature_channels):
                raise ValueError(f"DistillSpec: {len(self.feature_spaces)} feature_spaces but "
                                 f"{len(self.feature_channels)} levels")
            bad = [s for s in self.feature_spaces if s not in FEATURE_SPACES]
            if bad:
                raise ValueError(f"DistillSpec: feature_spaces {bad} not in {FEATURE_SPACES}")
        if "bev" in self.spaces and self.bev_grid is None:
            raise ValueError("DistillSpec: a 'bev' level needs bev_grid")
        for name, (channels, strides) in self.sources.items():
            if len(channels) != len(strides):
                raise ValueError(f"DistillSpec: source {name!r} has {len(channels)} channels but "
                                 f"{len(strides)} strides")

    @property
    def spaces(self) -> list[str]:
        """The space of every level (``"image"`` where ``feature_spaces`` is None)."""
        return list(self.feature_spaces) if self.feature_spaces is not None else ["image"] * len(self.feature_channels)

    @property
    def has_decoder(self) -> bool:
        return self.num_decoder_layers > 0

    def source(self, name: str) -> "DistillSpec":
        """The spec of feature source ``name`` as if it were ``features``: ``encoder_input`` is
        this spec itself, any other source an image-plane spec of its (channels, strides)."""
        if name == "encoder_input":
            return self
        if name not in self.sources:
            raise ConfigError(f"distill.feature.source: {name!r} is not exposed by this detector "
                              f"(it has: encoder_input{''.join(', ' + s for s in self.sources)})")
        channels, strides = self.sources[name]
        return DistillSpec(list(channels), list(strides), self.query_dim, self.num_decoder_layers)


@runtime_checkable
class DistillableDetector(Protocol):
    """A detector a distiller can wrap (see the module docstring for the ``outputs`` keys)."""

    distill_spec: DistillSpec

    def forward(self, batch: dict) -> dict[str, Any]:
        """batch (see docs/architecture.md) -> outputs, including ``outputs["distill"]``."""

    def losses(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        """Weighted loss terms and ``"loss"`` = their sum."""

    def decode(self, outputs: dict, batch: dict) -> list:
        """Per image, the list of Object3D in original image coordinates."""

    def match_foreground(self, outputs: dict, batch: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, (query_idx (M,), target_idx (M,)) of the Hungarian matching to the GT."""


def distill_features(outputs: dict, who: str = "detector") -> list[torch.Tensor]:
    """The (B, C_k, H_k, W_k) feature list of ``outputs``, with a clear error if absent."""
    try:
        return list(outputs["distill"]["features"])
    except (KeyError, TypeError):
        raise ConfigError(f"{who}: outputs['distill']['features'] missing; the detector does not "
                          "implement monokd.distill.interface") from None


def distill_source(outputs: dict, name: str, who: str = "detector") -> list[torch.Tensor]:
    """The (B, C_k, H_k, W_k) list of feature source ``name``: ``features`` itself for
    ``"encoder_input"``, else ``outputs["distill"]["sources"][name]``."""
    if name == "encoder_input":
        return distill_features(outputs, who)
    sources = (outputs.get("distill") or {}).get("sources") or {}
    if name not in sources:
        raise ConfigError(f"{who}: outputs['distill']['sources'] has no {name!r} (has: {sorted(sources)}); "
                          "distill.feature.source names a source the detector does not expose")
    return list(sources[name])


def distill_queries(outputs: dict, who: str = "detector") -> torch.Tensor:
    """The (L, B, Q, C) decoder query states of ``outputs``, with a clear error if absent."""
    queries = (outputs.get("distill") or {}).get("queries")
    if queries is None:
        raise ConfigError(f"{who}: outputs['distill']['queries'] missing (a detector without a "
                          "decoder): set distill.response.enabled=false")
    return queries


def has_estimated_depth(detector) -> bool:
    """Whether ``detector`` declares the optional estimated-depth method."""
    return callable(getattr(detector, "estimated_depth_map", None))


def estimated_depth_map(detector, outputs: dict) -> torch.Tensor:
    """(B, 1, h, w) depth in metres the detector itself estimates (detached).

    Uses ``detector.estimated_depth_map(outputs)`` when declared, else
    ``outputs["distill"]["depth_map"]``; raises ConfigError naming the option otherwise.
    """
    if has_estimated_depth(detector):
        depth = detector.estimated_depth_map(outputs)
    else:
        depth = (outputs.get("distill") or {}).get("depth_map")
    if depth is None:
        raise ConfigError(f"{type(detector).__name__} exposes no estimated depth map (neither "
                          "estimated_depth_map(outputs) nor outputs['distill']['depth_map']); "
                          "distill.feature.pos_encoding=estimated needs one (use gt or none)")
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ConfigError(f"{type(detector).__name__}: estimated depth map must be (B, 1, h, w), "
                          f"got {tuple(depth.shape)}")
    return depth.detach()
