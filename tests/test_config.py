import pytest

from monokd.config import get, load_config, merge, set_key
from monokd.errors import ConfigError


def test_merge_is_recursive_and_pure():
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    out = merge(base, {"a": {"b": 5}, "e": 3})
    assert out == {"a": {"b": 5, "c": 2}, "d": [1], "e": 3}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}


def test_base_files_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  hidden_dim: 256\n  depth_input: gt_object\ntrain:\n  epochs: 10\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n  epochs: 3\n")
    cfg = load_config(tmp_path / "child.yaml", ["model.depth_input=null", "train.lr=2e-4", "new.key=[1, 2]"])
    assert cfg["model"] == {"hidden_dim": 256, "depth_input": None}
    assert cfg["train"] == {"epochs": 3, "lr": 2e-4}
    assert get(cfg, "new.key") == [1, 2]
    assert get(cfg, "missing.key", "x") == "x"


def test_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key.path=value"):
        set_key({}, "no_equals_sign")
    with pytest.raises(ConfigError, match="'a' is not a section"):
        set_key({"a": 1}, "a.b=2")


def test_section_options_merges_and_names_the_key():
    from monokd.config import section_options

    defaults = {"method": "x", "part": {"on": True, "mode": "a"}}
    choices = {("part", "mode"): ("a", "b")}
    assert section_options({"part": {"mode": "b"}}, defaults, choices, "distill") == \
        {"method": "x", "part": {"on": True, "mode": "b"}}
    assert defaults["part"]["mode"] == "a"  # the defaults are not modified
    for bad, message in (({"nope": 1}, "distill.nope: unknown option"),
                         ({"part": {"nope": 1}}, "distill.part.nope: unknown option"),
                         ({"part": 3}, "distill.part: expected a mapping"),
                         ({"part": {"mode": "c"}}, "distill.part.mode: 'c' is not one of")):
        with pytest.raises(ConfigError, match=message):
            section_options(bad, defaults, choices, "distill")
