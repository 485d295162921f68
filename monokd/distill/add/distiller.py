"""ADD: a student trained with a frozen, GT-depth-aware teacher of the same architecture.

    L = L_student + alpha * L_feat + beta * L_ed                                    (Eq. 6)

L_feat (Eq. 4) compares adapted student features with the teacher's on every distilled level,
L_ed (Eq. 5) adapted student decoder queries with the teacher's on every decoder layer.

The distiller is itself a detector (monokd.distill.base), so the engine trains it like any
model. ``forward`` is the student's forward asking for the signals these losses read
(monokd/models/contract.py: the distilled features or source, the queries, the masks or
estimated depths of the PE), so decoding and inference never pay for the teacher; the teacher
runs inside ``losses``, without gradients, held frozen outside the module tree.

Beyond the paper (docs/add.md, "Options beyond the paper"): ``feature.source`` picks the
distilled maps (``encoder_input``, the paper's CNN levels, or a source the teacher's GT depth
has entered, e.g. MonoDETR's ``depth_memory``); ``response.pairing`` pairs student and teacher
queries by index (the paper) or through the GT object both are matched to (``gt_matched``);
``{feature,response}.normalization`` is ``region_mean`` (each region's mean) or ``sum`` (the
literal sums of Eq. 4 / 5, per image).

Unlabeled frames (``data.unlabeled``, docs/unlabeled.md): L_student reads the labeled frames
only (the student's own masking); L_feat reads every frame, an unlabeled frame's M^k and GT PE
depth built by the same rule from the teacher's own boxes of score >= ``feature.unlabeled_fg_score``
in place of GT boxes. L_ed is refused with unlabeled frames: its M_f is the teacher's matching
to GT objects.
"""

from __future__ import annotations

import torch
from torch import nn

from monokd.distill.add.adapters import ConvAdapter, MLPAdapter
from monokd.distill.add.cross_attention import CrossAttentionAdapter
from monokd.distill.add.losses import balanced_mse
from monokd.distill.add.masks import level_mask_and_depth, query_mask
from monokd.distill.add.pairing import gt_matched_targets
from monokd.distill.add.pos_encoding import DepthPositionalEncoding
from monokd.distill.add.self_attention import SelfAttentionAdapter
from monokd.distill.base import Distiller
from monokd.errors import ConfigError
from monokd.models.contract import ENCODER_INPUT, LABELED, TARGETS, Detector, signal_set, signals_of
from monokd.schema import Section

# The paper's settings (Implementation Details); C_d / C_dim are not given: 60 one-metre
# bins over MonoDETR's 60 m range, embedded at the feature width.
DEFAULTS = {
    "method": "add",
    # allow_*: overrides of monokd.training.preflight.check_teacher (a plain teacher, a teacher
    # trained on the student's validation frames); the run's notes say when they were used
    # config: None builds the teacher from the config stored in its checkpoint
    "teacher": {"config": None, "ckpt": None, "allow_plain": False, "allow_overlap": False},
    "feature": {
        "enabled": True,
        "source": "encoder_input",  # paper-literal: the CNN levels; or a detector's distill_spec.sources name
        "adapter": "self_attention",  # self_attention (+SA) | conv (plain F)
        "pos_encoding": "gt",  # gt | estimated | none
        "levels": None,  # indices into the distilled feature levels; None = all
        "weight": 1.0,  # alpha
        "fg_weight": 1.0,  # alpha_I
        "bg_weight": 0.1,  # beta_I
        "depth_channels": 60,  # C_d
        "embed_dim": 256,  # C_dim
        "depth_max": 60.0,  # metres mapped onto the C_d bins
        "heads": 8,
        "normalization": "region_mean",  # region_mean | sum (the literal Eq. 4)
        # an unlabeled frame's M^k and GT PE depth: the teacher's boxes of at least this score
        "unlabeled_fg_score": 0.5,
    },
    "response": {
        "enabled": True,
        "adapter": "cross_attention",  # cross_attention (+CA) | mlp (plain R)
        "weight": 1.0,  # beta
        "fg_weight": 1.0,  # alpha_v
        "bg_weight": 0.5,  # beta_v
        "heads": 8,
        "pairing": "index",  # paper-literal: student query i <-> teacher query i | gt_matched
        "normalization": "region_mean",  # region_mean | sum (the literal Eq. 5)
    },
}
# the signal holding the estimated PE depth of a level, by the level's space
ESTIMATED = {"image": "estimated_depth", "bev": "estimated_bev_depth", "given": "estimated_pe_depth"}
CHOICES = {
    "feature.adapter": ("self_attention", "conv"),
    "feature.pos_encoding": ("gt", "estimated", "none"),
    "response.adapter": ("cross_attention", "mlp"),
    "response.pairing": ("index", "gt_matched"),
    "feature.normalization": ("region_mean", "sum"),
    "response.normalization": ("region_mean", "sum"),
}
SECTION = Section("distill", DEFAULTS, choices=CHOICES,
                  paths=("teacher.config", "teacher.ckpt"),
                  renamed={"teacher_config": "teacher.config", "teacher_ckpt": "teacher.ckpt"})


def parse_options(section: dict) -> dict:
    """``cfg["distill"]`` merged over DEFAULTS; unknown keys or values raise ConfigError."""
    options = SECTION.resolve(section)
    if not isinstance(options["feature"]["source"], str):
        raise ConfigError(f"distill.feature.source: expected a name, got {options['feature']['source']!r}")
    if options["method"] != "add":
        raise ConfigError(f"distill.method: {options['method']!r} is not 'add'")
    return options


class ADDDistiller(Distiller):
    """Student + (hidden, frozen) teacher + ADD's training-only adapters."""

    def __init__(self, student: nn.Module, teacher: nn.Module, options: dict):
        for who, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, Detector):
                raise ConfigError(f"distill: the {who} ({type(model).__name__}) is not a "
                                  "monokd.models.contract.Detector")
        spec = student.distill_spec
        if teacher.distill_spec != spec:
            raise ConfigError(f"distill.teacher: its distill_spec {teacher.distill_spec} differs from the "
                              f"student's {spec}; ADD needs a teacher of the same architecture")
        super().__init__(student)
        self.options = options
        self.hold_frozen("teacher", teacher)

        feat, resp = options["feature"], options["response"]
        # the spec of the distilled maps: the detector's features, or the source named
        self.feature_spec = spec.source(feat["source"]) if feat["enabled"] else spec
        channels = self.feature_spec.feature_channels
        self.feature_levels = self._levels(feat["levels"], len(channels)) if feat["enabled"] else []
        self.feature_adapters = nn.ModuleDict(
            {str(k): self._feature_adapter(channels[k], feat) for k in self.feature_levels})
        if resp["enabled"] and not spec.has_decoder:
            raise ConfigError("distill.response.enabled: the student has no decoder (query_dim None); "
                              "set distill.response.enabled=false (the paper's beta = 0)")
        n_layers = spec.num_decoder_layers if resp["enabled"] else 0
        self.response_adapters = nn.ModuleList(
            [self._response_adapter(spec.query_dim, resp) for _ in range(n_layers)])
        self.teacher_signals = self._teacher_signals()
        self.student_signals = self.teacher_signals | self._pe_signals()

    @classmethod
    def from_section(cls, section: dict, student: nn.Module, frozen: dict) -> "ADDDistiller":
        if frozen.get("teacher") is None:
            raise ConfigError("distill.teacher: no teacher model given (load it from distill.teacher.{config, ckpt})")
        return cls(student, frozen["teacher"], parse_options(section))

    def _teacher_signals(self) -> frozenset[str]:
        """What both models' forwards give these losses: the distilled maps and the queries."""
        feat = self.options["feature"]
        wanted = set()
        if self.feature_levels:
            wanted.add("features" if feat["source"] == ENCODER_INPUT else feat["source"])
        if len(self.response_adapters):
            wanted.add("queries")
        return signal_set(wanted)

    def _pe_signals(self) -> frozenset[str]:
        """What the student's forward gives the PE of the distilled levels: the masks and GT
        depths of "given" levels, the estimated depth of each level's space."""
        feat = self.options["feature"]
        spaces = {self.feature_spec.spaces[k] for k in self.feature_levels}
        wanted = {"masks", "pe_depth"} if "given" in spaces else set()
        if feat["adapter"] == "self_attention" and feat["pos_encoding"] == "estimated":
            wanted |= {ESTIMATED[space] for space in spaces}
        return signal_set(wanted)

    @staticmethod
    def _levels(levels, n_levels: int) -> list[int]:
        levels = list(range(n_levels)) if levels is None else [int(k) for k in levels]
        bad = [k for k in levels if not 0 <= k < n_levels]
        if bad or not levels or len(set(levels)) != len(levels):
            raise ConfigError(f"distill.feature.levels: {levels} must be distinct indices in [0, {n_levels})")
        return levels

    @staticmethod
    def _feature_adapter(channels: int, feat: dict) -> nn.Module:
        if feat["adapter"] == "conv":
            return ConvAdapter(channels)
        pos = None
        if feat["pos_encoding"] != "none":
            pos = DepthPositionalEncoding(channels, feat["depth_channels"], feat["embed_dim"], feat["depth_max"])
        return SelfAttentionAdapter(channels, feat["heads"], pos)

    @staticmethod
    def _response_adapter(dim: int, resp: dict) -> nn.Module:
        if resp["adapter"] == "mlp":
            return MLPAdapter(dim)
        return CrossAttentionAdapter(dim, resp["heads"])

    # --- losses ----------------------------------------------------------------------------
    def losses(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        """The student's terms, plus ``distill_feat`` = alpha * L_feat and ``distill_resp`` =
        beta * L_ed for the enabled branches; ``loss`` = the student's loss + those terms."""
        terms = dict(self.student.losses(outputs, batch))
        if not self.feature_levels and not len(self.response_adapters):
            return terms
        with torch.no_grad():
            teacher_outputs = self.teacher(batch, signals=self.teacher_signals)
        extra = {}
        if self.feature_levels:
            extra["distill_feat"] = self.options["feature"]["weight"] * self.feature_loss(
                outputs, teacher_outputs, self.with_pseudo_targets(batch, teacher_outputs))
        if len(self.response_adapters):
            extra["distill_resp"] = self.options["response"]["weight"] * self.response_loss(outputs, teacher_outputs, batch)
        clash = set(extra) & set(terms)
        if clash:
            raise ConfigError(f"distill: the student's losses already use the keys {sorted(clash)}")
        terms["loss"] = terms["loss"] + sum(extra.values())
        terms.update(extra)
        return terms

    @classmethod
    def unlabeled_refusal(cls, section: dict) -> str | None:
        if parse_options(section)["response"]["enabled"]:
            return ("distill.response: L_ed's foreground queries are the teacher's matching to labels, which an "
                    "unlabeled frame lacks; set distill.response.enabled=false or remove data.unlabeled")
        return None

    def with_pseudo_targets(self, batch: dict, teacher_outputs: dict) -> dict:
        """``batch`` whose unlabeled frames (``batch[LABELED]`` False) hold the teacher's boxes of
        score >= ``feature.unlabeled_fg_score`` as targets (``Detector.pseudo_targets``), from
        which M^k and the GT PE depth of those frames are built; ``batch`` itself when every
        frame is labeled."""
        flags = batch.get(LABELED)
        if flags is None or bool(torch.as_tensor(flags).all()):
            return batch
        pseudo = self.teacher.pseudo_targets(teacher_outputs, batch, self.options["feature"]["unlabeled_fg_score"])
        targets = [target if bool(labeled) else guess
                   for target, labeled, guess in zip(batch[TARGETS], flags, pseudo)]
        return {**batch, TARGETS: targets}

    def feature_loss(self, outputs: dict, teacher_outputs: dict, batch: dict) -> torch.Tensor:
        """L_feat of Eq. 4, summed over the distilled levels of ``feature.source``."""
        feat = self.options["feature"]
        signals = signals_of(outputs, "student")
        student_features = signals.source(feat["source"], "student")
        teacher_features = signals_of(teacher_outputs, "teacher").source(feat["source"], "teacher")
        uses_pe = feat["adapter"] == "self_attention" and feat["pos_encoding"] != "none"
        estimated = uses_pe and feat["pos_encoding"] == "estimated"
        spec = self.feature_spec
        total = 0.0
        for k in self.feature_levels:
            student, teacher = student_features[k], teacher_features[k]
            if student.shape != teacher.shape:
                raise ConfigError(f"distill: level {k}: student feature {tuple(student.shape)} vs teacher "
                                  f"{tuple(teacher.shape)}")
            try:
                mask, gt_depth = level_mask_and_depth(spec, k, batch, signals, tuple(student.shape[-2:]), student.device)
            except ValueError as err:
                raise ConfigError(str(err)) from None
            depth = None
            if uses_pe:
                depth = self._estimated_depth(signals, spec.spaces[k], k) if estimated else gt_depth
            adapted = self.feature_adapters[str(k)](student, depth)
            total = total + balanced_mse(adapted, teacher, mask, feat["fg_weight"], feat["bg_weight"],
                                         feat["normalization"])
        return total

    @staticmethod
    def _estimated_depth(signals, space: str, k: int) -> torch.Tensor:
        """The estimated PE depth of level k, from the student's signal of the level's space:
        ``estimated_depth`` (B, 1, h, w) for image levels, ``estimated_bev_depth`` for BEV
        levels, ``estimated_pe_depth[k]`` for given levels; detached."""
        hint = f"distill.feature.pos_encoding=estimated needs it for level {k} ({space!r} space; use gt or none)"
        depth = signals.require(ESTIMATED[space], "student", hint)
        if space == "given":
            depth = depth[k]
        if depth is None or depth.dim() != 4 or depth.shape[1] != 1:
            raise ConfigError(f"distill: the student's {ESTIMATED[space]} must be (B, 1, h, w); {hint}")
        return depth.detach()

    def response_loss(self, outputs: dict, teacher_outputs: dict, batch: dict) -> torch.Tensor:
        """L_ed of Eq. 5, summed over the decoder layers; M_f from the teacher's matching.

        ``pairing=index``: adapted student query i vs teacher query i, fg = M_f, bg = the rest.
        ``pairing=gt_matched``: adapted student query s vs the teacher query t matched to the
        same GT object (both final-layer matchings); only those pairs, so no bg term.
        """
        resp = self.options["response"]
        no_decoder = "a detector without a decoder: set distill.response.enabled=false"
        student_queries = signals_of(outputs, "student").require("queries", "student", no_decoder)
        teacher_queries = signals_of(teacher_outputs, "teacher").require("queries", "teacher", no_decoder)
        if student_queries.shape != teacher_queries.shape:
            raise ConfigError(f"distill: student queries {tuple(student_queries.shape)} vs teacher "
                              f"{tuple(teacher_queries.shape)} (same number of layers and queries needed)")
        with torch.no_grad():
            matches = self.teacher.match_foreground(teacher_outputs, batch)
            student_matches = self.student.match_foreground(outputs, batch) if resp["pairing"] == "gt_matched" else None
        mask = query_mask(matches, teacher_queries.shape[2], teacher_queries.device)
        bg_weight = resp["bg_weight"]
        total = 0.0
        for layer, adapter in enumerate(self.response_adapters):
            adapted, target = adapter(student_queries[layer], teacher_queries[layer]), teacher_queries[layer]
            if student_matches is not None:
                target, mask = gt_matched_targets(target, student_matches, matches)
                bg_weight = 0.0
            total = total + balanced_mse(adapted, target, mask, resp["fg_weight"], bg_weight, resp["normalization"])
        return total


# --- named ablation rows -----------------------------------------------------------------
def _row(feature: str | None, response: str | None, pos_encoding: str = "gt",
         feat_bg: float = 0.1, resp_bg: float = 0.5, source: str = "encoder_input",
         pairing: str = "index", normalization: str = "region_mean") -> list[str]:
    """Overrides (``key=value`` for config.set_key) that pin every ADD switch."""
    return [
        f"distill.feature.enabled={str(feature is not None).lower()}",
        f"distill.feature.source={source}",
        f"distill.feature.adapter={feature or 'self_attention'}",
        f"distill.feature.pos_encoding={pos_encoding}",
        f"distill.feature.bg_weight={feat_bg}",
        f"distill.feature.normalization={normalization}",
        f"distill.response.enabled={str(response is not None).lower()}",
        f"distill.response.adapter={response or 'cross_attention'}",
        f"distill.response.bg_weight={resp_bg}",
        f"distill.response.pairing={pairing}",
        f"distill.response.normalization={normalization}",
    ]


# Table 4 rows (a)-(h) and Table 5, as overrides of an ADD recipe (configs/add_monodetr_*.yaml).
# "baseline" drops the distill section: the student trained alone.
PRESETS: dict[str, list[str]] = {
    "baseline": ["distill=null"],
    "F": _row("conv", None),
    "F+SA": _row("self_attention", None),
    "R": _row(None, "mlp"),
    "R+CA": _row(None, "cross_attention"),
    "F+R": _row("conv", "mlp"),
    "F+SA+R": _row("self_attention", "mlp"),
    "F+R+CA": _row("conv", "cross_attention"),
    "F+SA+R+CA": _row("self_attention", "cross_attention"),
    # Table 5, PE rows (on F+SA)
    "SA-PE-none": _row("self_attention", None, pos_encoding="none"),
    "SA-PE-estimated": _row("self_attention", None, pos_encoding="estimated"),
    "SA-PE-gt": _row("self_attention", None, pos_encoding="gt"),
    # Table 5, feature bg weight beta_I (on F+SA, alpha_I = 1)
    **{f"feat-bg-{b:.2f}": _row("self_attention", None, feat_bg=b) for b in (0.0, 0.05, 0.1, 0.2)},
    # Table 5, response bg weight beta_v (on R+CA, alpha_v = 1)
    **{f"resp-bg-{b:.2f}": _row(None, "cross_attention", resp_bg=b) for b in (0.1, 0.25, 0.5, 1.0)},
    # Beyond the paper (docs/add.md): full ADD (h) with one change each. "paper-literal" is (h)
    # with Eq. 4 / 5 summed as written; the others keep region means and change what is distilled.
    "paper-literal": _row("self_attention", "cross_attention", normalization="sum"),
    "depth-memory": _row("self_attention", "cross_attention", source="depth_memory"),
    "gt-pairing": _row("self_attention", "cross_attention", pairing="gt_matched"),
    "depth-memory+gt-pairing": _row("self_attention", "cross_attention", source="depth_memory",
                                    pairing="gt_matched"),
}
TABLES = {
    "table4": ["baseline", "F", "F+SA", "R", "R+CA", "F+R", "F+SA+R", "F+R+CA", "F+SA+R+CA"],
    "table5": ["baseline", "SA-PE-none", "SA-PE-estimated", "SA-PE-gt",
               "feat-bg-0.00", "feat-bg-0.05", "feat-bg-0.10", "feat-bg-0.20",
               "resp-bg-0.10", "resp-bg-0.25", "resp-bg-0.50", "resp-bg-1.00"],
    "variants": ["baseline", "F+SA+R+CA", "paper-literal", "depth-memory", "gt-pairing", "depth-memory+gt-pairing"],
    "pe": ["SA-PE-none", "SA-PE-estimated", "SA-PE-gt"],  # Table 5's positional-encoding rows
}
# The paper's KITTI val Car AP3D R40 (easy, moderate, hard) per row, for reports.
PAPER_AP3D = {
    "baseline": (27.63, 19.93, 16.70), "F": (28.92, 19.86, 17.21), "F+SA": (29.50, 20.90, 17.51),
    "R": (29.00, 19.97, 16.58), "R+CA": (29.41, 21.18, 17.77), "F+R": (27.40, 19.73, 16.37),
    "F+SA+R": (28.51, 20.63, 17.28), "F+R+CA": (29.20, 20.69, 17.25), "F+SA+R+CA": (30.71, 21.94, 18.42),
    "SA-PE-none": (28.45, 20.37, 16.30), "SA-PE-estimated": (27.99, 20.19, 17.01), "SA-PE-gt": (29.50, 20.90, 17.51),
    "feat-bg-0.00": (28.37, 20.32, 17.12), "feat-bg-0.05": (28.66, 20.53, 16.52),
    "feat-bg-0.10": (29.50, 20.90, 17.51), "feat-bg-0.20": (28.51, 20.45, 17.24),
    "resp-bg-0.10": (28.55, 20.04, 16.65), "resp-bg-0.25": (29.27, 20.18, 17.54),
    "resp-bg-0.50": (29.41, 21.18, 17.77), "resp-bg-1.00": (28.85, 20.65, 17.32),
}
# What `monokd ablate` reports of these rows (monokd.pipeline.ablate): the title, what the
# rows are, each row's label, the paper's AP3D of the frozen teacher (Table 4, first row) and
# the rows a demo preset runs by default.
ABLATION = {
    "title": "ADD", "rows": "Rows as in the paper's Table 4 and the PE rows of Table 5",
    "labels": {"teacher": "Teacher (object-wise depth GT)", "baseline": "MonoDETR (baseline)", "F": "(a) F",
               "F+SA": "(b) F +SA", "R": "(c) R", "R+CA": "(d) R +CA", "F+R": "(e) F, R",
               "F+SA+R": "(f) F +SA, R", "F+R+CA": "(g) F, R +CA", "F+SA+R+CA": "(h) F +SA, R +CA",
               "SA-PE-none": "+SA w/o PE", "SA-PE-estimated": "+SA w/ estimated PE", "SA-PE-gt": "+SA w/ GT PE"},
    "frozen_paper_ap3d": {"teacher": (41.43, 28.15, 22.84)},
    "default_rows": {"quick": ["baseline", "F+SA+R+CA"]},
}

