from pathlib import Path

import pytest
import yaml

from skinacc.config import (
    ConfigError,
    DataArguments,
    LoggingArguments,
    ModelArguments,
    TrainArguments,
    load_yaml_config,
    save_config,
    validate,
)

from .conftest import REPO

TYPES = (DataArguments, ModelArguments, TrainArguments, LoggingArguments)


def test_defaults_follow_the_seed():
    m, t, d = ModelArguments(), TrainArguments(), DataArguments()
    assert (m.model, m.pretrained) == ("efficientnet_b3", True)
    assert (t.optimizer, t.lr, t.batch_size, t.early_stopping_patience) == ("adam", 1e-3, 64, 3)
    assert (d.test_size, d.val_size) == (0.3, 0.1)
    validate(d, m, t, LoggingArguments())


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as e:
        validate(
            DataArguments(test_size=1.5, num_workers=-1),
            ModelArguments(model="nope_net"),
            TrainArguments(lr=0, batch_size=0),
        )
    msg = str(e.value)
    for flag in ("--test_size=1.5", "--num_workers=-1", "--model='nope_net'", "--lr=0", "--batch_size=0"):
        assert flag in msg


def test_yaml_flat_and_sectioned(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("lr: 0.01\nmodel:\n  model: efficientnet_b0\ndata:\n  test_size: 0.2\n")
    flat = load_yaml_config(p, TYPES)
    assert flat == {"lr": 0.01, "model": "efficientnet_b0", "test_size": 0.2}


def test_yaml_unknown_key_is_an_error(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("train:\n  learning_rate: 0.01\n")
    with pytest.raises(ConfigError, match="unknown option train.'learning_rate'"):
        load_yaml_config(p, TYPES)
    with pytest.raises(ConfigError, match="no such file"):
        load_yaml_config(tmp_path / "missing.yaml", TYPES)


@pytest.mark.parametrize("path", sorted((REPO / "recipes" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_config_parses(path):
    flat = load_yaml_config(path, TYPES)
    assert flat
    # Values must also build valid dataclasses (data_dir may point at data absent on this machine).
    cfgs = []
    for t in TYPES:
        names = set(t.__dataclass_fields__)
        cfgs.append(t(**{k: v for k, v in flat.items() if k in names and k != "data_dir"}))
    validate(*cfgs)


@pytest.mark.parametrize("path", sorted((REPO / "accelerate_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_accelerate_config_parses(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    raw = yaml.safe_load(path.read_text())
    assert cfg.num_processes == raw["num_processes"]
    assert str(cfg.mixed_precision) in ("no", "fp16", "bf16")
    assert path.read_text().lstrip().startswith("#"), "launch configs are commented"


def test_launch_settings_live_only_in_accelerate_configs():
    for p in (REPO / "recipes" / "configs").glob("*.yaml"):
        text = p.read_text()
        for key in ("mixed_precision:", "num_processes:", "dynamo"):
            assert key not in text, f"{p.name} sets {key} (launch settings belong in accelerate_configs/)"


def test_save_config_round_trip(tmp_path):
    path = save_config(
        tmp_path / "config.yaml",
        DataArguments(),
        TrainArguments(lr=0.5),
        extra={"launch": {"num_processes": 2}},
    )
    data = yaml.safe_load(Path(path).read_text())
    assert data["train"]["lr"] == 0.5 and data["launch"]["num_processes"] == 2
    assert (tmp_path / "config.json").is_file()
