"""The ADD distiller on a fake detector: loss terms, gradients, frozen teacher, ablation switches."""

import copy

import pytest
import torch

from monokd.config import set_key
from monokd.distill import build_distiller
from monokd.distill.add.adapters import ConvAdapter, MLPAdapter
from monokd.distill.add.cross_attention import CrossAttentionAdapter
from monokd.distill.add.losses import balanced_mse
from monokd.distill.add.masks import gt_depth_maps
from monokd.distill.add.pairing import gt_matched_targets, gt_pairs
from monokd.distill import preset_overrides
from monokd.distill.add.distiller import DEFAULTS, PAPER_AP3D, PRESETS, TABLES
from monokd.distill.add.self_attention import SelfAttentionAdapter
from monokd.models.contract import SIGNALS, DistillSpec, attach_signals, signal_set
from monokd.errors import ConfigError
from tests.test_distill_fake import FakeDetector, make_batch

torch.set_num_threads(1)

SMALL = {"depth_channels": 8, "embed_dim": 12, "heads": 4}


def _cfg(**feature):
    return {"model": {"name": "fake"},
            "distill": {"method": "add", "teacher": {"config": "t.yaml", "ckpt": "t.ckpt"},
                        "feature": {**SMALL, **feature}, "response": {"heads": 4}}}


def _pair(seed=0, **kwargs):
    torch.manual_seed(seed)
    return FakeDetector(**kwargs), FakeDetector(depth_input=True)


def test_losses_are_student_terms_plus_distill_terms():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(), student, teacher)
    batch = make_batch()
    outputs = distiller(batch)
    terms = distiller.losses(outputs, batch)
    own = student.losses(outputs, batch)
    assert set(terms) == set(own) | {"distill_feat", "distill_resp"}
    assert terms["distill_feat"] > 0 and terms["distill_resp"] > 0
    expected = own["loss"] + terms["distill_feat"] + terms["distill_resp"]
    assert torch.allclose(terms["loss"], expected)
    # alpha and beta scale their terms linearly
    cfg = _cfg()
    cfg["distill"]["feature"]["weight"] = 2.0
    cfg["distill"]["response"]["weight"] = 0.0
    student2, teacher2 = _pair()
    scaled = build_distiller(cfg, student2, teacher2).losses(outputs, batch)
    assert torch.allclose(scaled["distill_feat"], 2 * terms["distill_feat"])
    assert scaled["distill_resp"] == 0


def test_gradients_reach_student_and_adapters_never_the_teacher():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(), student, teacher)
    distiller.train()
    assert not teacher.training and distiller.student.training
    teacher_before = copy.deepcopy(teacher.state_dict())
    student_before = copy.deepcopy(student.state_dict())
    param_ids = {id(p) for p in distiller.parameters()}
    assert not param_ids & {id(p) for p in teacher.parameters()}
    assert all(not key.startswith("teacher") for key in distiller.state_dict())

    optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=0.1)
    batch = make_batch()
    distiller.losses(distiller(batch), batch)["loss"].backward()
    assert student.stem.weight.grad is not None and student.stem.weight.grad.abs().sum() > 0
    assert student.layers[0].weight.grad.abs().sum() > 0
    sa = distiller.feature_adapters["0"]
    assert sa.q_proj.weight.grad.abs().sum() > 0
    assert sa.pos_encoding.embedding.weight.grad.abs().sum() > 0
    assert distiller.response_adapters[1].q_mlp[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    optimizer.step()
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert not torch.equal(student.stem.weight, student_before["stem.weight"])


def test_teacher_follows_dtype_moves_and_stays_out_of_the_checkpoint():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(), student, teacher).double()
    assert teacher.stem.weight.dtype == torch.float64
    prefixes = {key.split(".")[0] for key in distiller.state_dict()}
    assert prefixes == {"student", "feature_adapters", "response_adapters"}
    assert set(distiller.student_state_dict()) == set(FakeDetector().state_dict())


@pytest.mark.parametrize("name", [n for n in PRESETS if n != "baseline" and n not in TABLES["variants"]])
def test_each_preset_builds_exactly_the_terms_it_names(name):
    cfg = _cfg()
    for item in preset_overrides(name):
        set_key(cfg, item)
    student, teacher = _pair()
    distiller = build_distiller(cfg, student, teacher)
    feature = "F" in name.split("+") or name.startswith(("SA-", "feat-"))
    response = "R" in name.split("+") or name.startswith("resp-")
    assert bool(distiller.feature_adapters) == feature
    assert bool(len(distiller.response_adapters)) == response
    sa = "SA" in name or name.startswith("feat-")
    ca = "CA" in name or name.startswith("resp-")
    for adapter in distiller.feature_adapters.values():
        assert isinstance(adapter, SelfAttentionAdapter if sa else ConvAdapter)
        if sa:
            assert (adapter.pos_encoding is None) == name.endswith("PE-none")
    for adapter in distiller.response_adapters:
        assert isinstance(adapter, CrossAttentionAdapter if ca else MLPAdapter)
    batch = make_batch()
    terms = distiller.losses(distiller(batch), batch)
    assert ("distill_feat" in terms) == feature and ("distill_resp" in terms) == response
    assert name in PAPER_AP3D


def test_preset_tables_and_baseline():
    assert all(name in PRESETS for rows in TABLES.values() for name in rows)
    assert len(TABLES["table4"]) == 9 and len(TABLES["table5"]) == 12
    cfg = _cfg()
    for item in preset_overrides("baseline"):
        set_key(cfg, item)
    assert cfg["distill"] is None
    cfg = _cfg()
    for item in preset_overrides("feat-bg-0.05"):
        set_key(cfg, item)
    assert cfg["distill"]["feature"]["bg_weight"] == 0.05 and cfg["distill"]["response"]["enabled"] is False
    with pytest.raises(ConfigError, match="unknown"):
        preset_overrides("F+XX")


def test_levels_select_adapters_and_bg_weight_matters():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(levels=[1]), student, teacher)
    assert list(distiller.feature_adapters) == ["1"]
    batch = make_batch()
    outputs = distiller(batch)
    base = distiller.losses(outputs, batch)["distill_feat"]
    distiller.options["feature"]["bg_weight"] = 0.0
    assert distiller.losses(outputs, batch)["distill_feat"] < base
    with pytest.raises(ConfigError, match="levels"):
        build_distiller(_cfg(levels=[2]), *_pair())


def test_estimated_positional_encoding_uses_the_students_depth():
    batch = make_batch()
    student, teacher = _pair()
    distiller = build_distiller(_cfg(pos_encoding="estimated", levels=[0]), student, teacher)
    outputs = distiller(batch)
    first = distiller.losses(outputs, batch)["distill_feat"]
    outputs[SIGNALS].estimated_depth = outputs[SIGNALS].estimated_depth * 0 + 55.0  # a different estimate
    assert not torch.isclose(distiller.losses(outputs, batch)["distill_feat"], first)
    # a student exposing no estimated depth fails with the option's name
    student, teacher = _pair(estimated_depth=False)
    distiller = build_distiller(_cfg(pos_encoding="estimated"), student, teacher)
    with pytest.raises(ConfigError, match="pos_encoding=estimated"):
        distiller.losses(distiller(batch), batch)


def test_gt_positional_encoding_depends_on_gt_depth():
    student, teacher = _pair()
    distiller = build_distiller(_cfg(levels=[0]), student, teacher)
    batch = make_batch()
    feature = distiller(batch)[SIGNALS].features[0].detach()
    adapter = distiller.feature_adapters["0"]
    near = adapter(feature, gt_depth_maps(batch["targets"], feature.shape[-2:], 4))
    for target in batch["targets"]:
        target["depth"] = target["depth"] + 20.0
    far = adapter(feature, gt_depth_maps(batch["targets"], feature.shape[-2:], 4))
    assert not torch.allclose(near, far)


def test_config_errors_name_the_option():
    with pytest.raises(ConfigError, match="distill.feature.colour"):
        build_distiller(_cfg(colour=1), *_pair())
    cfg = _cfg()
    cfg["distill"]["response"]["adapter"] = "transformer"
    with pytest.raises(ConfigError, match="distill.response.adapter"):
        build_distiller(cfg, *_pair())
    with pytest.raises(ConfigError, match="no teacher"):
        build_distiller(_cfg(), FakeDetector(), None)
    student, teacher = _pair()
    student.distill_spec = DistillSpec([16, 16], [4, 8], None, 0)
    teacher.distill_spec = student.distill_spec
    with pytest.raises(ConfigError, match="response.enabled=false"):
        build_distiller(_cfg(), student, teacher)
    cfg = _cfg()
    cfg["distill"]["response"]["enabled"] = False
    assert len(build_distiller(cfg, student, teacher).response_adapters) == 0
    student, teacher = _pair()
    teacher.distill_spec = DistillSpec([16, 32], [4, 8], 16, 2)
    with pytest.raises(ConfigError, match="same architecture"):
        build_distiller(_cfg(), student, teacher)
    assert DEFAULTS["feature"]["bg_weight"] == 0.1 and DEFAULTS["response"]["bg_weight"] == 0.5


# --- options beyond the paper: normalisation, index-free pairing, variant rows ------------------
def test_sum_normalization_is_the_literal_sum_per_image():
    student = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]], [[0.0, 1.0], [2.0, 2.0], [0.0, 0.0]]])
    teacher = torch.zeros_like(student)
    fg = torch.tensor([[True, False, False], [False, True, False]])
    # squared errors per query: [5, 0, 9], [1, 8, 0]; fg = {5, 8}, bg = {0, 9, 1, 0}
    literal = balanced_mse(student, teacher, fg, 1.0, 0.5, "sum")
    assert literal.item() == pytest.approx((1.0 * (5 + 8) + 0.5 * (0 + 9 + 1 + 0)) / 2)
    means = balanced_mse(student, teacher, fg, 1.0, 0.5, "region_mean")
    assert means.item() == pytest.approx(1.0 * 13 / (2 * 2) + 0.5 * 10 / (4 * 2))
    with pytest.raises(ValueError, match="normalization"):
        balanced_mse(student, teacher, fg, 1.0, 0.5, "mean")


def test_gt_pairs_route_through_the_gt_object():
    # image 0: the student matched target 0 to query 3 and target 1 to query 0; the teacher
    # matched target 1 to query 4, target 0 to query 1 and target 2 (which the student left) to 2
    student = [(torch.tensor([3, 0]), torch.tensor([0, 1])), (torch.tensor([5]), torch.tensor([0]))]
    teacher = [(torch.tensor([4, 1, 2]), torch.tensor([1, 0, 2])), (torch.tensor([], dtype=torch.long),
                                                                   torch.tensor([], dtype=torch.long))]
    pairs = gt_pairs(student, teacher)
    assert pairs[0][0].tolist() == [3, 0] and pairs[0][1].tolist() == [1, 4]
    assert pairs[1][0].numel() == 0 and pairs[1][1].numel() == 0
    queries = torch.arange(2 * 6 * 2, dtype=torch.float32).reshape(2, 6, 2)
    target, mask = gt_matched_targets(queries, student, teacher)
    assert mask.tolist() == [[True, False, False, True, False, False], [False] * 6]
    assert torch.equal(target[0, 3], queries[0, 1]) and torch.equal(target[0, 0], queries[0, 4])
    assert target[1].abs().sum() == 0


def test_gt_matched_response_loss_pulls_each_student_query_to_its_objects_teacher_query():
    cfg = _cfg()
    cfg["distill"]["feature"]["enabled"] = False
    cfg["distill"]["response"].update({"adapter": "mlp", "pairing": "gt_matched"})
    student, teacher = _pair()
    distiller = build_distiller(cfg, student, teacher)
    student.match_foreground = lambda outputs, batch: [(torch.tensor([3]), torch.tensor([0])),
                                                       (torch.tensor([0, 2]), torch.tensor([1, 0]))]
    teacher.match_foreground = lambda outputs, batch: [(torch.tensor([1]), torch.tensor([0])),
                                                       (torch.tensor([5, 4]), torch.tensor([0, 1]))]
    batch = make_batch()
    outputs = distiller(batch)
    terms = distiller.losses(outputs, batch)
    assert set(terms) == set(student.losses(outputs, batch)) | {"distill_resp"}
    s_q, t_q = outputs[SIGNALS].queries, teacher(batch, signals={"queries"})[SIGNALS].queries
    pairs = [(0, 3, 1), (1, 0, 4), (1, 2, 5)]  # (image, student query, teacher query) via the GT
    expected = 0.0
    for layer, adapter in enumerate(distiller.response_adapters):
        adapted = adapter(s_q[layer], t_q[layer])
        error = sum((adapted[b, s] - t_q[layer][b, t]).pow(2).sum() for b, s, t in pairs)
        expected = expected + error / (len(pairs) * s_q.shape[-1])  # alpha_v = 1, no bg term
    assert torch.allclose(terms["distill_resp"], expected)
    distiller.options["response"]["pairing"] = "index"  # the paper's i <-> i reads other queries
    assert not torch.allclose(distiller.losses(outputs, batch)["distill_resp"], expected)


@pytest.mark.parametrize("name", TABLES["variants"][1:])
def test_variant_rows_pin_exactly_the_switches_they_name(name):
    cfg = _cfg()
    for item in preset_overrides(name):
        set_key(cfg, item)
    options = cfg["distill"]
    assert options["feature"]["source"] == ("depth_memory" if "depth-memory" in name else "encoder_input")
    assert options["response"]["pairing"] == ("gt_matched" if "gt-pairing" in name else "index")
    literal = "sum" if name == "paper-literal" else "region_mean"
    assert options["feature"]["normalization"] == options["response"]["normalization"] == literal
    assert options["feature"]["adapter"] == "self_attention" and options["response"]["adapter"] == "cross_attention"
    if "depth-memory" in name:  # the fake detector exposes no depth memory
        with pytest.raises(ConfigError, match="distill.feature.source"):
            build_distiller(cfg, *_pair())
        return
    student, teacher = _pair()
    distiller = build_distiller(cfg, student, teacher)
    batch = make_batch()
    outputs = distiller(batch)
    terms = distiller.losses(outputs, batch)
    assert set(terms) == set(student.losses(outputs, batch)) | {"distill_feat", "distill_resp"}


def test_depth_bin_is_ceil_minus_one_as_the_docstring_says():
    from monokd.distill.add.pos_encoding import DepthPositionalEncoding

    pe = DepthPositionalEncoding(8, depth_channels=60, embed_dim=4, depth_max=60.0)
    depth = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 59.9, 60.0, 80.0]).view(1, 1, 1, -1)
    assert pe.index(depth, (1, 8)).flatten().tolist() == [0, 0, 0, 1, 1, 59, 59, 59]  # floor would give 1 at 1.0 m


class _GivenLevelDetector(FakeDetector):
    """The fake detector with its stride-8 level in the "given" space: it supplies M^k and the
    PE depth itself (as PatchNet does for its patches)."""

    given_mask = None

    def __init__(self):
        super().__init__()
        self.distill_spec = DistillSpec([16, 16], [4, 8], 16, 2, feature_spaces=["image", "given"])

    def forward(self, batch, signals=()):
        outputs = super().forward(batch, signals={"features"} | set(signals))
        f8 = outputs[SIGNALS].features[1]
        mask = self.given_mask.expand(f8.shape[0], *f8.shape[-2:])
        return attach_signals(outputs, signal_set(signals), masks=[None, mask],
                              pe_depth=[None, torch.full((f8.shape[0], 1, *f8.shape[-2:]), 20.0)])


def test_given_level_uses_the_detectors_masks():
    from monokd.distill.add.distiller import ADDDistiller, parse_options

    torch.manual_seed(0)
    student, teacher = _GivenLevelDetector(), _GivenLevelDetector()
    options = parse_options({"feature": {"levels": [1], "adapter": "conv", "fg_weight": 1.0, "bg_weight": 0.0},
                             "response": {"enabled": False}})
    distiller = ADDDistiller(student, teacher, options)
    batch = make_batch()
    _GivenLevelDetector.given_mask = torch.zeros(1, 4, 8, dtype=torch.bool)
    assert distiller.losses(distiller(batch), batch)["distill_feat"] == 0  # no foreground, no background weight
    _GivenLevelDetector.given_mask = torch.ones(1, 4, 8, dtype=torch.bool)
    assert distiller.losses(distiller(batch), batch)["distill_feat"] > 0
    sa = parse_options({"feature": {"levels": [1], "heads": 2, "embed_dim": 8}, "response": {"enabled": False}})
    assert torch.isfinite(ADDDistiller(student, teacher, sa).losses(distiller(batch), batch)["distill_feat"])


def test_train_preset_applies_a_rows_overrides_before_set(monkeypatch, capsys):
    from monokd.cli import main
    from monokd.distill import preset_overrides
    from monokd.commands import train as train_cmd

    seen = []

    def capture(path, overrides):
        seen.append(list(overrides))
        raise ConfigError("stop before training")

    monkeypatch.setattr(train_cmd, "load_config", capture)
    assert main(["train", "--config", "configs/add_monodetr_synth.yaml", "--preset", "paper-literal",
                 "--set", "distill.feature.weight=0.5"]) == 1
    literal = preset_overrides("paper-literal")
    assert "distill.feature.normalization=sum" in literal and "distill.response.normalization=sum" in literal
    assert seen == [[*literal, "distill.feature.weight=0.5"]]  # --set after the row: it wins
    assert preset_overrides("+IMD")  # MonoTAKD's rows too
    capsys.readouterr()
    assert main(["train", "--config", "configs/add_monodetr_synth.yaml", "--preset", "nope"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--preset 'nope': unknown row" in err[0] and "paper-literal" in err[0]
