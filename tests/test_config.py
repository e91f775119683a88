import pytest
import yaml

from helpers.config import ConfigError, field_names, load_config
from conftest import ROOT

PROFILES = sorted((ROOT / "params").glob("*.yaml"))


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_profile_loads_and_lists_every_key(path):
    cfg = load_config(path)
    assert cfg.profile == path.stem
    assert set(yaml.safe_load(path.read_text())) == set(field_names())


def test_paper_profile_is_the_paper():
    cfg = load_config(ROOT / "params" / "paper.yaml")
    assert (cfg.text_encoder, cfg.vision_encoder) == ("bert-base-uncased", "openai/clip-vit-base-patch32")
    assert (cfg.learning_rate, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (2e-5, 0.01, 256, 8)
    assert (cfg.pseudo_threshold, cfg.pseudo_train_fraction, cfg.max_caption_length) == (0.8, 0.8, 128)
    assert cfg.metric_for_best.startswith("f1_a")


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError, match="learning_rat"):
        load_config({"profile": "x", "learning_rat": 1e-3})


@pytest.mark.parametrize("key,value", [("epochs", "8"), ("epochs", 8.5), ("epochs", True), ("freeze_text", 1),
                                       ("learning_rate", "fast"), ("vision_config", [1, 2])])
def test_wrong_type_is_rejected_by_name(key, value):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config({"profile": "x", key: value})


def test_bad_choice_and_range_are_rejected():
    with pytest.raises(ConfigError, match="loss_condition"):
        load_config({"profile": "x", "loss_condition": "maybe"})
    with pytest.raises(ConfigError, match="pseudo_threshold"):
        load_config({"profile": "x", "pseudo_threshold": 1.5})


def test_int_is_accepted_where_a_float_is_expected():
    assert load_config({"profile": "x", "learning_rate": 1}).learning_rate == 1.0


def test_yaml_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: bad\nbatchsize: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml.*batchsize"):
        load_config(bad)
