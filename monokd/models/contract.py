"""The detector contract: what a batch holds, what every detector declares, and what a
distiller may ask a detector for. Models and distillers both import this module and nothing
of each other; a distiller never reaches into a model's modules.

A detector is a :class:`Detector` (an ``nn.Module``) with

- ``forward(batch, signals=()) -> outputs``: the heads' tensors (``pred_*`` and what its own
  losses read); with ``signals`` (names of :class:`DistillSignals` fields) also
  ``outputs[SIGNALS]``, a :class:`DistillSignals` holding those fields. A signal nobody asks
  for is never computed (CaDDN's second frustum lift, PatchNet's crop of the GT depth);
- ``losses(outputs, batch)``, ``decode(outputs, batch)``;
- the declarations generic code reads instead of model names: :attr:`Detector.inputs` and
  :attr:`Detector.privileged_inputs` (batch keys its forward reads; privileged = ground truth
  or LiDAR, what makes a teacher), :attr:`Detector.decode_threshold`, :attr:`Detector.onnx_opset`
  (and the class methods that answer the same from a config, before any model is built);
- for unlabeled frames (``batch[LABELED]`` False, docs/unlabeled.md): :meth:`Detector.labeled_losses_of`
  (its ``losses`` take terms from labeled frames only) and :meth:`Detector.pseudo_targets`
  (its own confident detections as target dicts: what stands in for a teacher's GT boxes);
- for distillation: ``distill_spec`` (a :class:`DistillSpec`: shapes the distiller builds its
  adapters from) and ``match_foreground(outputs, batch)`` (the Hungarian matching of a
  detector with queries; none for the others).

A distiller declares the frozen models it holds (:class:`FrozenRole`: ADD a teacher, MonoTAKD a
teacher and a teaching assistant), so the code that builds and checks them never names a method.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from monokd.errors import ConfigError

# --- the batch (monokd.data.dataset.collate; docs/architecture.md, "The batch") ---------------
IMAGES = "images"
P2 = "P2"
P2_ORIGINAL = "P2_original"
INPUT_TO_ORIGINAL = "input_to_original"
IMAGE_SIZES = "image_sizes"
FRAME_IDS = "frame_ids"
FLIPPED = "flipped"
TARGETS = "targets"
LABELED = "labeled"
LIDAR_TO_RECT = "lidar_to_rect"
DEPTH_MAPS = "depth_maps"
DEPTH_PRED = "depth_pred"
PROPOSALS = "proposals"
POINTS = "points"
BATCH_KEYS: dict[str, str] = {
    IMAGES: "(B, 3, H, W) float32 network input, ImageNet mean/std normalised",
    P2: "(B, 3, 4) float32 projection matrix at the network input resolution",
    P2_ORIGINAL: "(B, 3, 4) float32 the calib file's P2",
    INPUT_TO_ORIGINAL: "(B, 2, 3) float32 affine map from input pixels to original image pixels",
    IMAGE_SIZES: "(B, 2) long original (width, height)",
    FRAME_IDS: "list[str] six-digit ids (<drive>/<frame> for a KITTI raw frame)",
    FLIPPED: "(B,) bool horizontal flip applied",
    TARGETS: "list of B dicts of the supervised objects (labels, boxes_2d, depth, dims, location, ...)",
    LABELED: "(B,) bool: the frame has labels (False: its empty targets mean unknown, not no object)",
    LIDAR_TO_RECT: "(B, 4, 4) float32 LiDAR -> rectified camera frame of the augmented frame",
    DEPTH_MAPS: "(B, 1, H, W) float32, optional: pixel-wise depth (depth_2 or LiDAR) at input resolution",
    DEPTH_PRED: "(B, 1, H, W) float32, optional: estimated depth (data.depth_pred_dir) at input resolution",
    PROPOSALS: "list of B dicts, optional: the 2-D boxes a two-stage detector starts from",
    POINTS: "list of (M, 4) float32, optional: LiDAR points in the rectified camera frame",
}
# what `monokd predict` and the ONNX model of `monokd export` give a detector
IMAGE_INPUTS = (IMAGES, P2, LIDAR_TO_RECT)
DEFAULT_ONNX_OPSET = 17

# --- what a distiller may ask ----------------------------------------------------------------
SIGNALS = "distill_signals"  # the outputs key of the DistillSignals a forward was asked for
ENCODER_INPUT = "encoder_input"  # the name of ``features`` as a feature source
FEATURE_SPACES = ("image", "bev", "given")


@dataclass
class DistillSignals:
    """The intermediate results a distiller may ask a detector's forward for (by field name);
    a field not asked for, or that the detector does not have, is None.

    Feature lists hold one (B, C_k, H_k, W_k) map per level described by the detector's
    :class:`DistillSpec`; depths are metres, detached.

    - ``features``: the distilled levels (MonoDETR: the maps entering the visual encoder;
      CaDDN, the LiDAR teacher: the BEV backbone's stage outputs; PatchNet: its box backbone's
      stage outputs, one "image" per box).
    - ``queries``: (L, B, Q, C) decoder query states, every layer.
    - ``depth_memory``: a feature source (``DistillSpec.sources``): MonoDETR's depth memory as
      one (B, C, H/16, W/16) map, the signal its teacher's GT depth enters.
    - ``estimated_depth``: (B, 1, h, w) the depth the detector estimates in the image plane.
    - ``estimated_bev_depth``: (B, 1, NY, NX) the depth the detector sees in BEV (CaDDN: its
      predicted distribution lifted alone).
    - ``masks``, ``pe_depth``, ``estimated_pe_depth``: per level (None for a level not in the
      "given" space): the foreground mask (B, h_k, w_k) bool, the GT depth of the 3D-aware
      positional encoding (B, 1, h_k, w_k), the same from the detector's own depth.
    - ``bev``: (B, C, NY, NX) the BEV feature before the detection backbone (MonoTAKD's F_S of
      the student, F_T of the LiDAR teacher).
    - ``residual``: (B, C, NY, NX) the predicted residual F_res' of MonoTAKD's student (None
      where its branch does not run).
    - ``ta_bev``: (B, C, NY, NX) MonoTAKD's TA feature F_TA computed by the student itself (its
      GT-depth branch over its own image features; None for a student without one).
    """

    features: list[torch.Tensor] | None = None
    queries: torch.Tensor | None = None
    depth_memory: list[torch.Tensor] | None = None
    estimated_depth: torch.Tensor | None = None
    estimated_bev_depth: torch.Tensor | None = None
    masks: list[torch.Tensor | None] | None = None
    pe_depth: list[torch.Tensor | None] | None = None
    estimated_pe_depth: list[torch.Tensor | None] | None = None
    bev: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    ta_bev: torch.Tensor | None = None

    def require(self, name: str, who: str, hint: str = "") -> Any:
        """The field ``name``; a ConfigError naming ``who`` (and ``hint``) when it is None."""
        value = getattr(self, name)
        if value is None:
            raise ConfigError(f"distill: the {who} gives no {name!r} signal" + (f"; {hint}" if hint else ""))
        return value

    def source(self, name: str, who: str) -> list[torch.Tensor]:
        """The feature list of source ``name``: ``features`` for ``encoder_input``, else the field."""
        return list(self.require("features" if name == ENCODER_INPUT else name, who))


SIGNAL_NAMES = tuple(f.name for f in fields(DistillSignals))
SOURCE_NAMES = ("depth_memory",)  # the signals a DistillSpec may describe as feature sources


def signal_set(names: Iterable[str]) -> frozenset[str]:
    """``names`` as a frozenset, each checked to be a DistillSignals field (ValueError)."""
    wanted = frozenset(names or ())
    unknown = sorted(wanted - set(SIGNAL_NAMES))
    if unknown:
        raise ValueError(f"distill signals {unknown} unknown (known: {', '.join(SIGNAL_NAMES)})")
    return wanted


def attach_signals(outputs: dict, wanted: frozenset[str], **values) -> dict:
    """Put the ``wanted`` ones of ``values`` into ``outputs[SIGNALS]`` (created when absent,
    and only when something is wanted); returns ``outputs``. Each value is a tensor, a list, or
    a zero-argument callable computed only when wanted."""
    names = [name for name in values if name in wanted]
    if not names:
        return outputs
    signals = outputs.setdefault(SIGNALS, DistillSignals())
    for name in names:
        value = values[name]
        setattr(signals, name, value() if callable(value) else value)
    return outputs


def signals_of(outputs: dict | None, who: str) -> DistillSignals:
    """``outputs[SIGNALS]``, or a ConfigError naming ``who`` when the forward was not asked."""
    signals = (outputs or {}).get(SIGNALS)
    if signals is None:
        raise ConfigError(f"distill: the {who}'s outputs hold no distillation signals (its forward was "
                          "called without signals=...)")
    return signals


@dataclass(frozen=True)
class DistillSpec:
    """Shapes a distiller needs to build its adapters before seeing any output.

    feature_channels[k] and feature_strides[k] describe ``DistillSignals.features[k]``;
    ``query_dim`` is C of the decoder query states (None without a decoder) and
    ``num_decoder_layers`` is L (0 without a decoder).

    ``feature_spaces[k]`` (None = every level ``"image"``) says where level k lives, hence how
    a distiller builds its foreground mask M^k and the depth of its 3D-aware PE:

    - ``"image"``: an image-plane map; stride = input pixels per cell (masks from the 2-D GT
      boxes);
    - ``"bev"``: a bird's-eye-view map of ``bev_grid`` (a ``monokd.geometry.grid.BEVGrid``);
      stride = grid cells per map cell (masks from the GT boxes' BEV footprints);
    - ``"given"``: the detector supplies both as ``DistillSignals.masks[k]`` / ``pe_depth[k]``
      (stride unused).

    ``sources`` maps a feature source (a name of :data:`SOURCE_NAMES`, a DistillSignals field)
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
            if name not in SOURCE_NAMES:
                raise ValueError(f"DistillSpec: source {name!r} is not a DistillSignals source {SOURCE_NAMES}")
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
        if name == ENCODER_INPUT:
            return self
        if name not in self.sources:
            raise ConfigError(f"distill.feature.source: {name!r} is not exposed by this detector "
                              f"(it has: {ENCODER_INPUT}{''.join(', ' + s for s in self.sources)})")
        channels, strides = self.sources[name]
        return DistillSpec(list(channels), list(strides), self.query_dim, self.num_decoder_layers)


# --- the detector ---------------------------------------------------------------------------
Matches = list[tuple[torch.Tensor, torch.Tensor]]


class Detector(nn.Module):
    """Base of every detector (see the module docstring). Subclasses implement ``forward``,
    ``losses`` and ``decode`` and override the declarations that differ from the defaults: an
    image model without privileged input, no decode threshold, ONNX opset 17, no queries."""

    onnx_opset: ClassVar[int] = DEFAULT_ONNX_OPSET

    @classmethod
    def from_config(cls, cfg: dict) -> "Detector":
        """The detector the whole config describes (``model``, ``data``, ``loss``)."""
        raise NotImplementedError(f"{cls.__name__}.from_config")

    @classmethod
    def inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        """The batch keys the forward of a detector built from ``model_cfg`` (the ``model``
        section) reads at inference: by default the image inputs and its privileged inputs."""
        return IMAGE_INPUTS + cls.privileged_inputs_of(model_cfg)

    @classmethod
    def privileged_inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        """The batch keys among its inputs that carry ground truth or LiDAR (a teacher's)."""
        return ()

    @classmethod
    def decode_threshold_of(cls, model_cfg: dict) -> tuple[str, float] | None:
        """(config key, score) below which ``decode`` drops a box; None when it has none."""
        return None

    @classmethod
    def initial_weights_of(cls, model_cfg: dict) -> dict | None:
        """The section naming a trained checkpoint a fresh run of this detector starts from
        (monokd.models.initial: ``ckpt``, ``map``, ``keep``), or None: a detector declares one
        only if its ``model`` section has it (MonoTAKD's student: ``model.init``)."""
        return None

    def model_section(self) -> dict:
        """The ``model`` section this detector was built from (its declarations read it)."""
        return getattr(self, "cfg", None) or {}

    @property
    def inputs(self) -> tuple[str, ...]:
        return type(self).inputs_of(self.model_section())

    @property
    def privileged_inputs(self) -> tuple[str, ...]:
        return type(self).privileged_inputs_of(self.model_section())

    @property
    def decode_threshold(self) -> tuple[str, float] | None:
        return type(self).decode_threshold_of(self.model_section())

    @property
    def distill_spec(self) -> DistillSpec:
        raise ConfigError(f"{type(self).__name__} declares no distill_spec: it cannot be distilled feature-wise")

    def match_foreground(self, outputs: dict, batch: dict) -> Matches:
        """Per image, (query_idx (M,), target_idx (M,)) of the matching to the GT; a detector
        without queries matches none (response distillation does not apply)."""
        empty = torch.zeros(0, dtype=torch.long)
        return [(empty, empty) for _ in range(_batch_size(batch))]


    @classmethod
    def labeled_losses_of(cls, model_cfg: dict) -> bool:
        """Whether ``losses`` honours ``batch[LABELED]``: every term from the labeled frames
        only (as if the batch held just those), and a batch without one gives zero terms that
        carry no gradient. False (the default) makes ``monokd train`` refuse
        ``data.unlabeled`` for this detector as a student."""
        return False

    def pseudo_targets(self, outputs: dict, batch: dict, min_score: float) -> list[dict]:
        """Per frame, the detections of ``outputs`` with score >= ``min_score`` as a target
        dict of the batch's (augmented) frame: ``labels`` (K,), ``boxes_2d`` (K, 4) input
        pixels, ``location`` (K, 3) rect bottom centre, ``dims`` (K, 3) h w l, ``rotation_y``
        (K,), ``depth`` (K,) m; what stands in for GT boxes on an unlabeled frame. The base
        class has none (ConfigError)."""
        raise ConfigError(f"{type(self).__name__} gives no pseudo targets (its confident detections as targets)")


def labeled_index(batch: dict) -> torch.Tensor | None:
    """The indices (K,) long of the labeled frames of ``batch`` (``batch[LABELED]``), or None
    when every frame is labeled (or the batch has no flags): the common case costs nothing."""
    flags = batch.get(LABELED)
    if flags is None:
        return None
    flags = torch.as_tensor(flags, dtype=torch.bool)
    return None if bool(flags.all()) else torch.nonzero(flags).flatten()


def _batch_size(batch: dict) -> int:
    for key in (FRAME_IDS, TARGETS, PROPOSALS):
        if batch.get(key) is not None:
            return len(batch[key])
    return int(batch[IMAGES].shape[0])


# --- the distiller's frozen models -------------------------------------------------------------
@dataclass(frozen=True)
class FrozenRole:
    """A frozen model a distiller holds: its config section ``distill.<name>`` ({config, ckpt,
    allow_plain, allow_overlap}); ``required``: built whenever the method runs (else only when
    configured, the distiller saying which of its losses needs it)."""

    name: str
    required: bool = True
