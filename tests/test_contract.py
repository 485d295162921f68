"""monokd/models/contract.py: signals are computed only when asked for, declarations answer from a
config, distillers declare their frozen models."""

from __future__ import annotations

import pytest
import torch

from monokd.errors import ConfigError
from monokd.models.contract import (SIGNAL_NAMES, SIGNALS, DistillSignals, FrozenRole, attach_signals,
                                    signal_set)


def test_signal_names_are_the_dataclass_fields_and_unknown_ones_are_refused():
    assert set(SIGNAL_NAMES) >= {"features", "queries", "depth_memory", "bev", "residual", "masks"}
    assert signal_set(["bev", "bev"]) == frozenset({"bev"})
    with pytest.raises(ValueError, match=r"\['bev_map'\] unknown"):
        signal_set(["bev_map"])


def test_attach_signals_computes_only_what_is_wanted():
    calls = []

    def expensive():
        calls.append(1)
        return torch.ones(1)

    outputs = attach_signals({"pred": 1}, frozenset(), features=[torch.zeros(1)], bev=expensive)
    assert outputs == {"pred": 1} and not calls  # nothing wanted: no entry, nothing computed
    outputs = attach_signals({}, frozenset({"features"}), features=[torch.zeros(1)], bev=expensive)
    assert outputs[SIGNALS].bev is None and not calls
    attach_signals(outputs, frozenset({"bev"}), bev=expensive)
    assert calls == [1] and torch.equal(outputs[SIGNALS].bev, torch.ones(1))
    assert len(outputs[SIGNALS].features) == 1  # a second call adds to the same signals


def test_require_names_the_model_and_the_way_out():
    signals = DistillSignals(bev=torch.zeros(1))
    assert signals.require("bev", "student") is signals.bev
    with pytest.raises(ConfigError, match=r"the teacher gives no 'queries' signal; set response off"):
        signals.require("queries", "teacher", "set response off")
    level = torch.zeros(1, 2, 3, 4)
    assert DistillSignals(features=[level]).source("encoder_input", "student")[0] is level
    with pytest.raises(ConfigError, match="no 'depth_memory' signal"):
        DistillSignals(features=[level]).source("depth_memory", "student")


def test_distillers_declare_their_frozen_models():
    from monokd.distill import distiller_class, frozen_roles

    assert frozen_roles({"distill": {"method": "add"}}) == (FrozenRole("teacher", required=True),)
    assert [r.name for r in frozen_roles({"distill": {"method": "takd"}})] == ["teacher", "ta"]
    assert not any(r.required for r in frozen_roles({"distill": {"method": "takd"}}))
    assert distiller_class({"distill": {"teacher": {}}}).__name__ == "ADDDistiller"  # the default method
    with pytest.raises(ConfigError, match="distill.method: unknown method 'kd'"):
        frozen_roles({"distill": {"method": "kd"}})
    with pytest.raises(ConfigError, match="unknown method 'TAKD' \\(did you mean 'takd'\\? known: "):
        frozen_roles({"distill": {"method": "TAKD"}})


def test_declarations_answer_from_a_config_without_building():
    from monokd.models import detector_class
    from monokd.training.preflight import is_privileged, model_role

    lidar = {"model": {"name": "lidar_pillars"}}
    assert model_role(lidar) == {"depth_input": None, "lidar_input": True, "privileged_inputs": ["points"]}
    caddn_teacher = {"model": {"name": "caddn", "depth_input": "gt_pixel"}}
    assert model_role(caddn_teacher)["privileged_inputs"] == ["depth_maps"]
    student = {"model": {"name": "takd_student", "camera": "caddn"}}
    assert not is_privileged(model_role(student))
    assert detector_class(student).decode_threshold_of(student["model"]) == ("model.anchor_head.score_threshold", 0.1)
    assert detector_class({"model": {"name": "patchnet"}}).inputs_of({}) == ("P2", "depth_pred", "proposals")
    # a role recorded before privileged_inputs existed still reads
    assert is_privileged({"depth_input": None, "lidar_input": True})
    assert not is_privileged({"depth_input": None, "lidar_input": False})
