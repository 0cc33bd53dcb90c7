"""The pieces of the dermoscopy recipe, one by one: augmentation, sampler, class weights, schedules,
early stopping on a metric, EMA, TTA and temperature scaling."""

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from skinacc.calibration import calibrate, fit_temperature, nll, probs_from_logits, tta_views
from skinacc.config import ConfigError, DataArguments, TrainArguments, validate
from skinacc.data import (
    BalancedSampler,
    ImageTransform,
    balanced_class_weights,
    build_dataloader,
    resolve_augment,
    resolve_data_config,
)
from skinacc.optim import EarlyStopping, build_cosine_scheduler


@pytest.fixture
def photo(tmp_path):
    """An asymmetric RGB image, so every flip and rotation gives different pixels."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    arr[:20, :30] = 255
    path = tmp_path / "lesion.jpg"
    Image.fromarray(arr).save(path, quality=95)
    return str(path)


def _batch(path, ids):
    return {"image": [path] * len(ids), "label": [0] * len(ids), "sample_id": list(ids)}


def test_dermoscopy_augmentation_is_keyed_and_leaves_the_global_rng_alone(photo):
    cfg = resolve_data_config(None, image_size=64, resize_size=64)
    aug = resolve_augment("dermoscopy")
    assert (aug.crop_scale_min, aug.auto_augment, aug.random_erasing) == (0.35, "trivial", 0.25)
    t = ImageTransform(cfg, train=True, seed=3, augment=aug)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = t(_batch(photo, [1, 2, 3, 4]))["pixel_values"]
    assert torch.equal(before, torch.get_rng_state()), "the main process's RNG is untouched"
    assert all(x.dtype == torch.uint8 and x.shape == (3, 64, 64) for x in a)
    b = t(_batch(photo, [4, 3, 2, 1]))["pixel_values"]
    assert all(torch.equal(x, y) for x, y in zip(a, reversed(b))), "a pure function of (seed, epoch, sample)"
    assert len({x.numpy().tobytes() for x in a}) == 4, "different samples, different draws"
    t.set_epoch(1)
    c = t(_batch(photo, [1, 2, 3, 4]))["pixel_values"]
    assert not any(torch.equal(x, y) for x, y in zip(a, c)), "a new epoch, new draws"
    # A fresh transform (another worker, a resumed run) draws exactly the same.
    t2 = ImageTransform(cfg, train=True, seed=3, augment=aug)
    t2.set_epoch(1)
    assert all(torch.equal(x, y) for x, y in zip(c, t2(_batch(photo, [1, 2, 3, 4]))["pixel_values"]))
    # Evaluation is deterministic and unaugmented whatever the preset.
    ev = ImageTransform(cfg, train=False, augment=aug)
    assert torch.equal(ev(_batch(photo, [1]))["pixel_values"][0], ev(_batch(photo, [2]))["pixel_values"][0])


def test_dermoscopy_rotations_are_the_dihedral_group(photo):
    """The flip/rotation step draws exactly the 8 symmetries of the square that dihedral TTA averages."""
    from skinacc.data.transforms import _Dihedral

    x = ImageTransform(resolve_data_config(None, image_size=64, resize_size=64), train=False)(
        _batch(photo, [0])
    )["pixel_values"][0]
    torch.manual_seed(0)
    drawn = {_Dihedral()(x).numpy().tobytes() for _ in range(200)}
    assert drawn == {v[0].numpy().tobytes() for v in tta_views(x[None], "dihedral")}


def test_augment_knobs_belong_to_the_dermoscopy_preset():
    with pytest.raises(ConfigError) as e:
        validate(DataArguments(augment="seed", color_jitter=0.3, random_erasing=2.0))
    assert "--color_jitter=0.3: applies to --augment dermoscopy" in str(e.value)
    assert "--random_erasing=2.0" in str(e.value)
    assert resolve_augment("dermoscopy", auto_augment="none").auto_augment == "none"


def test_balanced_sampler_balances_classes_and_shards_exactly_under_ddp():
    from accelerate.data_loader import prepare_data_loader

    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    s = BalancedSampler(labels, seed=7)
    s.set_epoch(2)
    draws = list(s)
    assert len(draws) == len(labels) == len(s)
    counts = np.bincount(labels[draws], minlength=3)
    assert counts.min() > 20, f"every class about a third of the draws: {counts}"
    assert draws == list(s), "a function of (seed, epoch)"
    s.set_epoch(3)
    assert draws != list(s)

    # Two ranks through accelerate: each takes its own share of the one global sequence.
    ds = [
        {"pixel_values": torch.zeros(1, dtype=torch.uint8), "labels": int(y), "sample_id": i}
        for i, y in enumerate(labels)
    ]
    whole = []
    for rank in range(2):
        loader = build_dataloader(ds, 4, train=True, num_workers=0, sampler=BalancedSampler(labels, seed=7))
        shard = prepare_data_loader(loader, num_processes=2, process_index=rank, put_on_device=False)
        shard.set_epoch(2)
        whole.append([b["sample_id"].tolist() for b in shard])
    interleaved = [i for pair in zip(*whole) for batch in pair for i in batch]
    assert interleaved == draws[: len(interleaved)] and len(interleaved) >= len(draws) - 8


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0, 0, 0, 0, 1, 1, 3])
    w = balanced_class_weights(y, 4)
    ref = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=y)
    assert w[[0, 1, 3]].numpy() == pytest.approx(ref) and w[2] == 0


def test_cosine_schedule_warms_up_anneals_and_is_plain_data():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = build_cosine_scheduler(opt, epochs=10, steps_per_epoch=10, warmup_epochs=2, min_lr=1e-5)
    lrs = []
    for step in range(1, 101):
        sched.step_update(step)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] < lrs[10] < lrs[19] == pytest.approx(1e-3, rel=0.01), "linear warm-up over 2 epochs"
    assert all(a >= b for a, b in itertools.pairwise(lrs[19:])), "then monotone decay"
    assert lrs[-1] == pytest.approx(1e-5, rel=0.05)
    json.dumps(sched.state_dict())  # checkpointable as plain data
    # The lr is a function of the step alone: a fresh scheduler told step 57 agrees.
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    build_cosine_scheduler(opt2, 10, 10, 2, 1e-5).step_update(57)
    assert opt2.param_groups[0]["lr"] == lrs[56]


def test_early_stopping_on_a_metric_to_maximise():
    stop = EarlyStopping(patience=2, mode="max")
    assert [stop.step(v, e) for e, v in enumerate([0.5, 0.6, 0.55, 0.6])] == [True, True, False, False]
    assert stop.should_stop and stop.best == 0.6 and stop.best_epoch == 1


def test_recipe_flags_are_validated_together():
    with pytest.raises(ConfigError) as e:
        validate(
            TrainArguments(
                warmup_epochs=1,
                scheduler="plateau",
                ema_decay=1.5,
                final_fit=True,
                calibrate=True,
                min_lr=1.0,
            )
        )
    msg = str(e.value)
    for bit in (
        "--warmup_epochs=1: needs --scheduler cosine",
        "--ema_decay=1.5",
        "--final_fit has no validation split to drive --scheduler plateau",
        "--final_fit has no validation split to fit --calibrate",
        "--min_lr=1.0",
    ):
        assert bit in msg


def test_tta_views_and_probabilities():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert len(tta_views(x, "none")) == 1
    flip = tta_views(x, "flip")
    assert torch.equal(flip[1], x.flip(-1))
    views = tta_views(x, "dihedral")
    assert len(views) == 8 and len({v.numpy().tobytes() for v in views}) == 8
    with pytest.raises(ValueError, match="--tta='all'"):
        tta_views(x, "all")
    with pytest.raises(ValueError, match="square"):
        tta_views(torch.zeros(1, 3, 4, 5), "dihedral")
    z = np.random.default_rng(0).normal(size=(5, 3, 4))
    p = probs_from_logits(z, 2.0)
    ref = np.exp(z / 2) / np.exp(z / 2).sum(-1, keepdims=True)
    assert p == pytest.approx(ref.mean(1)) and p.sum(1) == pytest.approx(1.0)


def test_temperature_scaling_recovers_a_known_temperature_and_lowers_ece():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(4000, 5))
    true_t = 2.5  # labels drawn from softmax(z / 2.5): the logits are over-confident by 2.5x
    p = probs_from_logits(z, true_t)
    y = np.array([rng.choice(5, p=row) for row in p])
    t = fit_temperature(z, y)
    assert t == pytest.approx(true_t, rel=0.1)
    assert nll(z, y, t) < nll(z, y, 1.0)
    cal = calibrate(z, y)
    assert cal["ece_after"] < 0.5 * cal["ece_before"] and cal["nll_after"] < cal["nll_before"]
    # With views, the temperature is fitted on the view-averaged probabilities.
    zv = np.stack([z, z + rng.normal(scale=0.1, size=z.shape)], 1)
    assert fit_temperature(zv, y) == pytest.approx(true_t, rel=0.15)
    with pytest.raises(ValueError, match="empty"):
        fit_temperature(np.zeros((0, 5)), np.zeros(0))


def test_ema_follows_the_weights_with_warm_up():
    from timm.utils import ModelEmaV3

    net = torch.nn.Linear(3, 2)
    ema = ModelEmaV3(net, decay=0.99, use_warmup=True)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, step=1)  # first update: a copy
    assert torch.equal(ema.module.weight, net.weight)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, step=2)
    assert (ema.module.weight < net.weight).all(), "the average lags behind"
    # The warm-up that README and --ema_decay's help quote: min(decay, 1 - t^(-2/3)) at update t (from 1).
    ema = ModelEmaV3(net, decay=0.998, use_warmup=True)
    assert ema.get_decay(31) == pytest.approx(1 - 31 ** (-2 / 3)) == pytest.approx(0.899, abs=1e-3)
    assert ema.get_decay(512) == pytest.approx(0.984375)
    assert ema.get_decay(12_000) == 0.998


def test_batch_mix_is_keyed_and_consistent():
    """MixUp/CutMix: images and soft targets agree, draws are a function of (seed, epoch, batch,
    process) alone, the global RNG is untouched, and the memory format is kept."""
    from skinacc.data import BatchMix

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 8, 8, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    mixup = BatchMix(4, mixup_alpha=0.4, seed=1)
    state = torch.get_rng_state()
    out, t = mixup(x, labels, epoch=2, batch=5)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG is left alone"
    assert t.shape == (6, 4) and torch.allclose(t.sum(1), torch.ones(6))
    lam = float(t[0, 0])  # image 0 (class 0) blended with image 5 (class 1): weight lam on its own
    assert 0.0 < lam < 1.0 and float(t[0, 1]) == pytest.approx(1 - lam)
    assert torch.allclose(out, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
    again, t2 = mixup(x, labels, epoch=2, batch=5)
    assert torch.equal(again, out) and torch.equal(t2, t), "same key, same draw (resume)"
    assert not torch.equal(mixup(x, labels, epoch=2, batch=6)[0], out), "another batch, another draw"
    other_rank = BatchMix(4, mixup_alpha=0.4, seed=1, process=1)
    assert not torch.equal(other_rank(x, labels, epoch=2, batch=5)[0], out), "each process its own"

    cutmix = BatchMix(4, cutmix_alpha=1.0, seed=1)
    cl = x.contiguous(memory_format=torch.channels_last)
    out, t = cutmix(cl, labels, epoch=0, batch=0)
    assert out.is_contiguous(memory_format=torch.channels_last)
    pasted = (out != cl).any(1)[0].float().mean()  # share of image 0's pixels taken from image 5
    assert float(t[0, 1]) == pytest.approx(float(pasted), abs=1e-6) and float(t[0, 0]) == pytest.approx(
        1 - float(pasted), abs=1e-6
    )

    off = BatchMix(4, mixup_alpha=0.4, cutmix_alpha=1.0, prob=0.0)
    same, onehot = off(x, labels, epoch=0, batch=0)
    assert same is x and torch.equal(onehot, torch.nn.functional.one_hot(labels, 4).float())
    # Soft targets go straight into the recipe's loss (label smoothing still applies).
    loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(torch.zeros(6, 4), t)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="mixup_alpha or cutmix_alpha"):
        BatchMix(4)


def test_layer_decay_is_validated():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ConfigError, match=rf"--layer_decay={bad}: must be in \(0, 1\]"):
            validate(TrainArguments(layer_decay=bad))
    validate(TrainArguments(layer_decay=1.0))  # allowed: the same as unset


def test_mix_flags_are_validated():
    with pytest.raises(ConfigError) as e:
        validate(TrainArguments(mixup_alpha=-0.2, cutmix_alpha=-1, mix_prob=1.5, mix_switch_prob=-0.1))
    msg = str(e.value)
    for bit in ("--mixup_alpha=-0.2", "--cutmix_alpha=-1", "--mix_prob=1.5", "--mix_switch_prob=-0.1"):
        assert bit in msg
