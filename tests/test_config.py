import pytest
import yaml

from conftest import ROOT
from helpers.config import ConfigError, field_names, load_config
from helpers.profiles import SECTIONS, TOP_LEVEL, flatten, write_resolved

PROFILES = sorted((ROOT / "params").glob("*.yaml"))


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_profile_loads_and_states_only_what_differs_from_the_paper(path):
    cfg = load_config(path)
    assert cfg.profile == path.stem
    paper = load_config(ROOT / "params" / "paper.yaml")
    stated = flatten(yaml.safe_load(path.read_text()), str(path))
    if path.stem == "paper":  # the base states every key, in its section
        assert set(stated) == set(field_names())
        assert list(yaml.safe_load(path.read_text())) == [*TOP_LEVEL, *SECTIONS]
    else:
        assert stated.pop("base") == "paper.yaml"
        same = [k for k in stated if k != "profile" and stated[k] == getattr(paper, k)]
        assert not same, f"{path.name} repeats the paper's values of {same}"


def test_a_key_outside_its_section_is_refused_naming_the_section(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("profile: p\nmodel:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="key 'epochs' belongs in section 'training', not 'model'"):
        load_config(profile)
    profile.write_text("profile: p\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="key 'learning_rate' belongs in section 'training:'"):
        load_config(profile)
    profile.write_text("profile: p\ntraining:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        load_config(profile)


def test_a_profile_is_its_base_with_its_own_keys_on_top(tmp_path):
    (tmp_path / "base.yaml").write_text("profile: base\ntraining:\n  epochs: 5\n  batch_size: 8\n")
    (tmp_path / "mine.yaml").write_text("profile: mine\nbase: base.yaml\ntraining:\n  epochs: 1\n")
    cfg = load_config(tmp_path / "mine.yaml")
    assert (cfg.profile, cfg.epochs, cfg.batch_size) == ("mine", 1, 8)
    (tmp_path / "base.yaml").write_text("profile: base\nbase: mine.yaml\n")
    with pytest.raises(ConfigError, match="leads back to itself"):
        load_config(tmp_path / "mine.yaml")


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_the_resolved_profile_written_beside_a_report_loads_to_the_same_config(tmp_path, path):
    cfg = load_config(path, {"epochs": 3})
    written = write_resolved(cfg, tmp_path / "profile.yaml")
    assert list(yaml.safe_load(written.read_text())) == [*TOP_LEVEL, *SECTIONS]
    assert load_config(written) == cfg


def test_paper_profile_is_the_paper():
    cfg = load_config(ROOT / "params" / "paper.yaml")
    assert (cfg.text_encoder, cfg.vision_encoder) == ("bert-base-uncased", "openai/clip-vit-base-patch32")
    assert (cfg.learning_rate, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (2e-5, 0.01, 256, 8)
    assert (cfg.pseudo_threshold, cfg.pseudo_train_fraction, cfg.max_caption_length) == (0.8, 0.8, 128)
    # The authors' main.py: metric_for_best_model="f1_A", the binary F1 of the AI class.
    assert cfg.metric_for_best == "f1_a"


def test_an_unknown_key_is_rejected_by_name_with_the_closest_known_one():
    with pytest.raises(ConfigError, match="'learning_rat' \\(did you mean 'learning_rate'\\?\\)"):
        load_config({"profile": "x", "learning_rat": 1e-3})


@pytest.mark.parametrize(
    "key,value",
    [
        ("epochs", "8"),
        ("epochs", 8.5),
        ("epochs", True),
        ("freeze_text", 1),
        ("learning_rate", "fast"),
        ("vision_config", [1, 2]),
    ],
)
def test_wrong_type_is_rejected_by_name(key, value):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config({"profile": "x", key: value})


def test_bad_choice_and_range_are_rejected():
    with pytest.raises(ConfigError, match="loss_condition"):
        load_config({"profile": "x", "loss_condition": "maybe"})
    with pytest.raises(ConfigError, match="pseudo_threshold"):
        load_config({"profile": "x", "pseudo_threshold": 1.5})
    for count in (0, 2.5, "4"):  # an empty split would be rendered and only fail far downstream
        with pytest.raises(ConfigError, match="synthetic_captions.*'test'"):
            load_config({"profile": "x", "synthetic_captions": {"train": 4, "test": count}})


def test_int_is_accepted_where_a_float_is_expected():
    assert load_config({"profile": "x", "learning_rate": 1}).learning_rate == 1.0


def test_yaml_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: bad\nbatchsize: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml.*batchsize"):
        load_config(bad)


def test_set_overrides_are_typed_like_the_yaml_and_validated_whole():
    from helpers.overrides import parse_overrides

    values = parse_overrides(
        [
            "epochs=2",
            "dataset=/data/defactify",
            "learning_rate=3e-5",
            "analyses=[]",
            "synthetic_captions={train: 4}",
            "caption_template=Caption: {}",
        ]
    )
    assert values == {
        "epochs": 2,
        "dataset": "/data/defactify",
        "learning_rate": 3e-5,
        "analyses": [],
        "synthetic_captions": {"train": 4},
        "caption_template": "Caption: {}",
    }
    cfg = load_config(ROOT / "params" / "paper.yaml", values)
    assert cfg.epochs == 2 and cfg.dataset == "/data/defactify" and cfg.text_encoder == "bert-base-uncased"
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])
    with pytest.raises(ConfigError, match="'epochs'"):
        load_config(ROOT / "params" / "paper.yaml", parse_overrides(["epochs=two"]))
    with pytest.raises(ConfigError, match="epoch"):
        load_config(ROOT / "params" / "paper.yaml", parse_overrides(["epoch=2"]))


def test_the_training_command_refuses_a_bad_set_before_any_work(capsys, tmp_path):
    from study.train import main

    assert main([str(ROOT / "params" / "smoke.yaml"), "--set", f"work_dir={tmp_path}", "--set", "batch_size=big"]) == 2
    assert "'batch_size'" in capsys.readouterr().err
    assert main([str(ROOT / "params" / "smoke.yaml"), "--set", f"work_dir={tmp_path}", "--set", "batchsize=8"]) == 2
    assert "batchsize" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_a_global_batch_that_does_not_divide_is_refused_by_train(capsys, tmp_path):
    from study.train import main

    assert main([str(ROOT / "params" / "smoke.yaml"), "--set", f"work_dir={tmp_path}", "--set", "processes=3"]) == 2
    assert "batch_size 16 does not divide over 3 processes; use 15 or 18" in capsys.readouterr().err
