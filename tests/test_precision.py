"""train.precision: the names, ``auto``'s choice, and the config key."""

import pytest

from monokd.config import load_config, setting
from monokd.errors import ConfigError
from monokd.training.precision import cpu_has_bf16, resolve_precision
from tests.helpers import REPO


def test_names_map_to_lightning():
    assert resolve_precision("32") == "32-true"
    assert resolve_precision(32) == "32-true"
    assert resolve_precision("bf16-mixed") == "bf16-mixed"
    with pytest.raises(ValueError, match="precision 'fp8'"):
        resolve_precision("fp8")


def test_auto_picks_bf16_only_where_native():
    said = []
    assert resolve_precision("auto", cuda=False, cpu_bf16=True, say=said.append) == "bf16-mixed"
    assert said == []
    assert resolve_precision("auto", cuda=False, cpu_bf16=False, say=said.append) == "32-true"
    assert said == ["train.precision auto: this CPU has no native bf16; training in fp32"]


def test_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_has_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert not cpu_has_bf16(info)
    assert not cpu_has_bf16(tmp_path / "absent")


def test_config_key():
    cfg = load_config(REPO / "configs" / "monodetr_synth.yaml", ["train.precision=bf16-mixed"])
    assert setting(cfg, "train.precision") == "bf16-mixed"
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(REPO / "configs" / "monodetr_synth.yaml", ["train.precision=fp8"])


def test_numeric_name_and_the_flag_are_recorded(monkeypatch):
    """`train.precision=32` (a number in YAML) is the name "32"; `monokd train --precision` is
    written into the run's config like every other setting."""
    cfg = load_config(REPO / "configs" / "monodetr_synth.yaml", ["train.precision=32"])
    assert resolve_precision(setting(cfg, "train.precision")) == "32-true"
    import argparse

    from monokd.commands import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--config", str(REPO / "configs" / "monodetr_synth.yaml"), "--precision", "bf16-mixed"])
    seen = {}
    monkeypatch.setattr(train, "fit", lambda cfg, *a, **k: seen.setdefault("cfg", cfg))
    train.run(args)
    assert setting(seen["cfg"], "train.precision") == "bf16-mixed"
