"""MonoTAKD's camera student (Liu et al. 2025, Fig. 2, bottom row): a camera BEV detector
(CaDDN's pipeline, ``monokd.models.caddn``) with a residual branch and a feature fusion module
between its BEV feature and its detection backbone.

    images -> camera.bev_features: image features, LID depth distribution, frustum -> voxels
           -> collapse                                                   F_0 (B, C, NY, NX)
    F_S = SCNET(F_0) with ``scnet`` (the released code's), else F_0     F_S (B, C, NY, NX)
    F_0 -> residual branch (1x1 projection, SAM)                         F_res' (B, C, NY, NX)
    FFM(F_S, F_res')                                                     F (B, C, NY, NX)
    F -> camera.detect_from_bev: BEV backbone -> anchor head             outputs

With ``ta: branch`` (the released code's TA) the TA is a branch of the student itself, run only
when a distiller asks for its ``ta_bev`` signal:

    image features F_img (the camera's, shared) -> one-hot LID bins of depth_maps (each block's
           mean valid depth at the feature stride) -> frustum -> voxels -> ta_collapse
           -> the residual branch's SAM (the same module; none without one)  F_TA (B, C, NY, NX)

so the TA and the student share the image features and the SAM (the released
``DepthFFN_TAKD`` / ``Conv2DCollapse_TAKD``: ``block_target`` then ``self.sam``). With ``ta:
network`` (the default, the paper's Fig. 2) the TA is a separate frozen model held by the
distiller.

The signals ``bev`` = F_S (what IMD compares with the TA), ``residual`` = F_res' (what CMRD
compares with F_T - F_TA) and ``ta_bev`` = F_TA feed monokd/distill/takd. Kept at inference:
the residual branch and FFM when ``ffm`` is on (they change the features the head reads); with
``ffm`` off the branch runs only in training (a CMRD auxiliary) and the student costs exactly
its camera detector. With the residual branch and FFM both off the student *is* its camera
detector (same outputs, ``camera.`` keys); the TA branch never runs at inference.

Config: ``model.name: takd_student``, ``model.camera`` the wrapped detector's registry name
(``caddn``), ``model.takd`` the options below, ``model.init`` the initial weights of a run (a
trained camera / TA checkpoint, monokd.models.initial); every other ``model`` key is the camera's.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from monokd.errors import ConfigError
from monokd.models.bev.collapse import BEVCollapse
from monokd.models.contract import Detector, attach_signals, signal_set
from monokd.models.initial import INIT
from monokd.models.takd.ffm import FFM
from monokd.models.takd.residual import ResidualBranch
from monokd.models.takd.sam import MODES
from monokd.models.takd.scnet import SCNet
from monokd.schema import Section

TAKD_DEFAULTS = {
    "channels": None,  # C of F_S; None: the camera detector's ``bev_channels``
    "residual": True,  # the CMRD branch
    "sam": {"enabled": True, "mode": "cascade", "dilations": [6, 12], "se_reduction": 4, "modulated": False},
    "ffm": True,  # the paper's default; the released code leaves it out
    "scnet": False,  # the released code's four SCBottlenecks on F_S before the BEV backbone
    "ta": "network",  # network: a separate frozen TA (the distiller's); branch: the student's own (released)
}
# the ``model`` keys this module reads (the others are the camera's)
DEFAULTS = {"name": "takd_student", "camera": "caddn", "takd": TAKD_DEFAULTS}
TA_SOURCES = ("network", "branch")
TAKD = Section("model.takd", TAKD_DEFAULTS, typed=True, choices={"sam.mode": MODES, "ta": TA_SOURCES})


def config_sections(model: dict) -> tuple[Section | None, Section | None]:
    """The ``model`` and ``loss`` declarations of a student config: the camera's, plus
    ``camera`` and ``takd``."""
    from monokd.models import model_sections

    name = model.get("camera", DEFAULTS["camera"])
    camera, loss = model_sections({**model, "name": name}) if name != DEFAULTS["name"] else (None, None)
    if camera is None:
        return None, loss
    return replace(camera, defaults={**camera.defaults, **DEFAULTS, "init": INIT.defaults},
                   sections={**camera.sections, "takd": TAKD, "init": INIT}), loss


def takd_options(section: dict | None) -> dict:
    """``model.takd`` over TAKD_DEFAULTS; unknown keys or inconsistent switches raise ConfigError."""
    options = TAKD.resolve(section)
    if options["ffm"] and not options["residual"]:
        raise ConfigError("model.takd.ffm: the FFM fuses the predicted residual; it needs model.takd.residual=true")
    return options


class TAKDStudent(Detector):
    """See the module docstring. ``camera`` implements ``bev_features`` / ``detect_from_bev``."""

    def __init__(self, camera: nn.Module, options: dict):
        super().__init__()
        for method in ("bev_features", "detect_from_bev", "losses", "decode"):
            if not callable(getattr(camera, method, None)):
                raise ConfigError(f"model.camera: {type(camera).__name__} has no {method}(); the MonoTAKD "
                                  "student wraps a camera BEV detector (caddn)")
        self.options = options
        self.camera = camera
        channels = (options["channels"] or getattr(camera, "bev_channels", None)
                    or (getattr(camera, "cfg", None) or {}).get("bev_channels"))
        if not channels:
            raise ConfigError("model.takd.channels: the camera detector declares no bev_channels; give it")
        self.bev_channels = int(channels)
        sam = options["sam"]
        sam_args = None
        if sam["enabled"]:
            sam_args = {"mode": sam["mode"], "dilations": tuple(sam["dilations"]),
                        "se_reduction": sam["se_reduction"], "modulated": sam["modulated"]}
        self.residual = ResidualBranch(self.bev_channels, self.bev_channels, sam_args) if options["residual"] else None
        self.ffm = FFM(self.bev_channels) if options["ffm"] else None
        self.scnet = SCNet(self.bev_channels) if options["scnet"] else None
        self.ta_branch = options["ta"] == "branch"
        self.ta_collapse = self._ta_collapse(camera) if self.ta_branch else None

    def _ta_collapse(self, camera: nn.Module) -> BEVCollapse:
        """The TA branch's own collapse (the released ``block_target``), shaped as the camera's."""
        collapse = getattr(camera, "collapse", None)
        if not isinstance(collapse, BEVCollapse) or not callable(getattr(camera, "lift_gt_depth", None)):
            raise ConfigError(f"model.takd.ta: branch needs a camera that lifts its features with GT depth "
                              f"(caddn); {type(camera).__name__} does not")
        norm = collapse.block[1]
        return BEVCollapse(collapse.in_channels, collapse.num_z, self.bev_channels, norm.eps, norm.momentum)

    def ta_features(self, batch: dict, image_features: torch.Tensor) -> torch.Tensor:
        """F_TA (B, C, NY, NX): ``image_features`` (B, C_img, h, w), the camera's, lifted with the
        one-hot LID bins of ``batch["depth_maps"]``, collapsed by ``ta_collapse`` and aligned by
        the residual branch's SAM (none without a residual branch: the ablation rows before SAM).
        Differentiable: the gradient reaches the shared features."""
        voxels = self.camera.lift_gt_depth(batch, image_features, "model.takd.ta: branch")
        bev = self.ta_collapse(voxels)
        return self.residual.align(bev) if self.residual is not None else bev

    # the camera's declarations: the student reads what its camera reads and decodes as it does
    @property
    def onnx_opset(self) -> int:
        """The camera's ONNX opset (CaDDN's lifting needs a 5-D GridSample: 20)."""
        return int(getattr(self.camera, "onnx_opset", 0))

    @classmethod
    def camera_section(cls, model_cfg: dict) -> tuple[type[Detector], dict]:
        """(the camera's class, its ``model`` section) of the student's ``model`` section."""
        from monokd.models import detector_class

        camera = {k: v for k, v in model_cfg.items() if k not in ("takd", "init")}
        camera["name"] = camera.pop("camera", DEFAULTS["camera"])
        return detector_class({"model": camera}), camera

    @classmethod
    def inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        camera, section = cls.camera_section(model_cfg)
        return camera.inputs_of(section)

    @classmethod
    def privileged_inputs_of(cls, model_cfg: dict) -> tuple[str, ...]:
        camera, section = cls.camera_section(model_cfg)
        return camera.privileged_inputs_of(section)

    @classmethod
    def decode_threshold_of(cls, model_cfg: dict) -> tuple[str, float] | None:
        camera, section = cls.camera_section(model_cfg)
        return camera.decode_threshold_of(section)

    @classmethod
    def initial_weights_of(cls, model_cfg: dict) -> dict | None:
        return model_cfg.get("init")  # the released two-stage start (monokd.models.initial)

    @classmethod
    def labeled_losses_of(cls, model_cfg: dict) -> bool:
        camera, section = cls.camera_section(model_cfg)
        return camera.labeled_losses_of(section)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(getattr(self.camera, "inputs", Detector.inputs_of({})))

    @property
    def privileged_inputs(self) -> tuple[str, ...]:
        return tuple(getattr(self.camera, "privileged_inputs", ()))

    @property
    def decode_threshold(self) -> tuple[str, float] | None:
        return getattr(self.camera, "decode_threshold", None)

    def bev_features(self, batch: dict) -> dict:
        return self.camera.bev_features(batch)

    def forward(self, batch: dict, signals=()) -> dict:
        signals = signal_set(signals)
        features = self.camera.bev_features(batch)
        bev = features["bev"]
        residual = None
        if self.residual is not None and (self.training or self.ffm is not None):
            residual = self.residual(bev)
        if self.scnet is not None:
            bev = self.scnet(bev)
        fused = self.ffm(bev, residual) if self.ffm is not None else bev
        outputs = self.camera.detect_from_bev(fused, batch, signals - {"bev"})
        if features.get("depth_logits") is not None:  # the camera's depth loss reads them (caddn's key)
            outputs["pred_depth_logits"] = features["depth_logits"]
        ta_bev = None
        if self.ta_collapse is not None:
            ta_bev = lambda: self.ta_features(batch, features["image_features"])  # noqa: E731 - run only when asked
        return attach_signals(outputs, signals, bev=bev, residual=residual, ta_bev=ta_bev)

    def losses(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        return self.camera.losses(outputs, batch)

    def decode(self, outputs: dict, batch: dict) -> list:
        return self.camera.decode(outputs, batch)

    @classmethod
    def from_config(cls, cfg: dict) -> "TAKDStudent":
        return build_takd_student(cfg)


def build_takd_student(cfg: dict) -> TAKDStudent:
    """The student of ``cfg`` (``model.name: takd_student``)."""
    from monokd.models import build_detector

    model = dict(cfg.get("model") or {})
    options = takd_options(model.pop("takd", None))
    model.pop("init", None)  # the initial weights: read when a run starts (monokd.models.initial)
    model["name"] = model.pop("camera", "caddn")
    if model["name"] == "takd_student":
        raise ConfigError("model.camera: the student wraps a camera detector, not itself")
    return TAKDStudent(build_detector({**cfg, "model": model}), options)
