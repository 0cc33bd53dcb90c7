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


# ----------------------------------------------------------------------------------------------------
# YAML values pass the same parsing and validation as flags (issue #24)


def _parse(tmp_path, yaml_text: str | None = None, argv: tuple[str, ...] = (), **kw):
    from skinacc.config.parse import parse_config

    args = list(argv)
    if yaml_text is not None:
        p = tmp_path / "recipe.yaml"
        p.write_text(yaml_text)
        args = ["--config", str(p), *args]
    return parse_config(TYPES, args, **kw)


def _choice_fields() -> list[str]:
    from skinacc.config.parse import ConfigArgumentParser

    return sorted({a.dest for a in ConfigArgumentParser(TYPES)._actions if a.choices})


def test_every_field_with_choices_is_found():
    assert {"scheduler", "sampler", "class_weighting", "select_epoch", "auto_augment", "tta"} <= set(
        _choice_fields()
    )


@pytest.mark.parametrize("name", _choice_fields())
def test_a_bad_choice_is_refused_from_yaml_as_from_a_flag(tmp_path, name):
    with pytest.raises(ConfigError) as e:
        _parse(tmp_path, f"{name}: not_a_choice\n")
    msg = str(e.value)
    assert (
        str(tmp_path / "recipe.yaml") in msg and f"{name}: invalid choice: 'not_a_choice' (choose from" in msg
    )
    with pytest.raises(ConfigError, match=f"argument --{name}(/--[a-z-]+)?: invalid choice: 'not_a_choice'"):
        _parse(tmp_path, argv=(f"--{name}", "not_a_choice"))


def test_yaml_values_are_converted_as_flags_are(tmp_path):
    d, m, t, log = _parse(tmp_path, "tags: x\nlr: 1e-3\nmean: [0.5, 0.4, 0.3]\npretrained: false\n")
    assert log.tags == ["x"], "a single tag, not a list of characters"
    assert t.lr == 0.001 and isinstance(t.lr, float), (
        "YAML reads 1e-3 as a string; the flag's float() reads it"
    )
    assert d.mean == [0.5, 0.4, 0.3] and m.pretrained is False
    with pytest.raises(ConfigError, match=r"--mean=\[0.5\]: must be three numbers"):
        _parse(tmp_path, "mean: 0.5\n")  # a traceback before
    with pytest.raises(ConfigError, match="lr: expected one value, got a list"):
        _parse(tmp_path, "train:\n  lr: [0.1, 0.2]\n")
    with pytest.raises(ConfigError, match="epochs: invalid int value: 'ten'"):
        _parse(tmp_path, "epochs: ten\n")
    with pytest.raises(ConfigError, match="epochs: null is not allowed"):
        _parse(tmp_path, "epochs: null\n")


def test_every_yaml_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as e:
        _parse(tmp_path, "scheduler: cosinee\nsampler: balancd\nepochs: ten\n")
    assert all(k in str(e.value) for k in ("scheduler:", "sampler:", "epochs:"))


def test_defaults_then_yaml_then_flags(tmp_path):
    defaults = {"lr": 0.1, "eval_image_size": 192}
    assert _parse(tmp_path, defaults=defaults)[2].lr == 0.1
    assert _parse(tmp_path, "lr: 0.2\n", defaults=defaults)[2].lr == 0.2
    assert _parse(tmp_path, "lr: 0.2\n", ("--lr", "0.3"), defaults=defaults)[2].lr == 0.3
    # null in YAML overrides a default with None, as leaving a flag out cannot
    assert _parse(tmp_path, "eval_image_size: null\n", defaults=defaults)[0].eval_image_size is None
    # defaults may depend on what the user gave (evaluate.py: the run's data options unless a source is named)
    seen = []
    _parse(
        tmp_path,
        argv=("--data-dir", str(tmp_path)),
        defaults=lambda first: seen.append(first[0].data_dir) or {},
    )
    assert seen == [str(tmp_path)]


def test_no_abbreviations_and_both_spellings(tmp_path):
    with pytest.raises(ConfigError, match="unknown argument.*--conf"):
        _parse(tmp_path, argv=("--conf", str(tmp_path / "x.yaml")))  # argparse took it for --config, silently
    with pytest.raises(ConfigError, match="unknown argument.*--epoch 3"):
        _parse(tmp_path, argv=("--epoch", "3"))
    dashed = _parse(tmp_path, argv=("--data-dir", str(tmp_path), "--select-epoch", "last", "--no-pretrained"))
    under = _parse(tmp_path, argv=("--data_dir", str(tmp_path), "--select_epoch", "last", "--no_pretrained"))
    assert dashed == under
    assert _parse(tmp_path, f"data-dir: {tmp_path}\nselect-epoch: last\npretrained: false\n") == under


def test_the_recipe_prints_one_line_and_exits_2(tmp_path, capsys):
    from skinacc.cli.common import parse_args

    (tmp_path / "r.yaml").write_text("scheduler: cosinee\n")
    with pytest.raises(SystemExit) as e:
        parse_args(TYPES, ["--config", str(tmp_path / "r.yaml")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: Invalid configuration" in err and "scheduler: invalid choice" in err
    assert "Traceback" not in err


def test_every_config_field_is_declared_with_option():
    # One way to declare an option: config.fields.option, so every field carries its help and the
    # knowledge keys (what may change on resume, what is set-up, what the card shows).
    import dataclasses
    import inspect

    import skinacc.config as config_package
    from skinacc.config import inference, tools
    from skinacc.config.fields import KNOWLEDGE

    classes = {
        c
        for m in (config_package, inference, tools)
        for _, c in inspect.getmembers(m, dataclasses.is_dataclass)
        if isinstance(c, type) and c.__module__.startswith("skinacc.config")
    }
    assert {"EvalArguments", "TrainArguments"} <= {c.__name__ for c in classes}
    bare = [
        f"{c.__name__}.{f.name}"
        for c in classes
        for f in dataclasses.fields(c)
        if not f.metadata.get("help") or not set(KNOWLEDGE) <= set(f.metadata)
    ]
    assert not bare, f"declare these with skinacc.config.fields.option: {bare}"
