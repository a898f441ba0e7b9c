"""The model: shapes, unit norms, channels, weight loading (local files only: no internet here)."""
import hashlib
import os
import socket

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from soundclr import weights as model_module
from soundclr.config import preset
from soundclr.model import ModelOutput, SoundCLRModel, build_model
from soundclr.weights import WeightsError

DIMS = {"tiny": 128, "resnet18": 512, "resnet34": 512, "resnet50": 2048}


def cfg(backbone="tiny", weights="none", channels=1, projection_dim=64):
    return preset("quick", backbone=backbone, weights=str(weights), channels=channels, projection_dim=projection_dim)


def unit_rows(t):
    return torch.allclose(t.norm(dim=1), torch.ones(t.shape[0]), atol=1e-5)


@pytest.mark.parametrize("backbone", ["tiny", "resnet18", "resnet34", "resnet50"])
def test_output_shapes_and_unit_norms(backbone):
    torch.manual_seed(0)
    m = build_model(cfg(backbone, channels=3), n_classes=7)
    assert isinstance(m, SoundCLRModel) and m.representation_dim == DIMS[backbone]
    out = m(torch.randn(2, 3, 64, 64))
    assert isinstance(out, ModelOutput)
    assert out.representation.shape == (2, DIMS[backbone])
    assert out.projection.shape == (2, 64) and out.logits.shape == (2, 7)
    assert unit_rows(out.representation) and unit_rows(out.projection)
    # the heads read the normalised representation
    assert torch.allclose(out.logits, m.classifier(out.representation), atol=1e-5)
    assert torch.allclose(out.projection, F.normalize(m.projection(out.representation), dim=1), atol=1e-6)


def test_represent_is_forwards_h_and_works_under_no_grad():
    m = build_model(cfg(), n_classes=5).eval()
    x = torch.randn(3, 1, 64, 157)
    with torch.no_grad():
        h = m.represent(x)
    assert torch.allclose(h, m(x).representation, atol=1e-6) and not h.requires_grad


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_follow_the_config_or_the_argument(channels):
    m = build_model(cfg(channels=channels), n_classes=4)
    assert m.encoder.conv1.in_channels == channels
    assert m(torch.randn(2, channels, 64, 100)).logits.shape == (2, 4)
    other = 4 - channels
    m = build_model(cfg(channels=channels), n_classes=4, in_channels=other)
    assert m.encoder.conv1.in_channels == other
    with pytest.raises(RuntimeError):
        m(torch.randn(2, channels, 64, 100))


def test_representation_is_float32_and_unit_norm_under_bf16_autocast():
    m = build_model(cfg(projection_dim=16), n_classes=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(torch.randn(4, 1, 64, 64))
    assert out.representation.dtype == torch.float32 and out.projection.dtype == torch.float32
    assert unit_rows(out.representation) and unit_rows(out.projection)


def test_batch_normalisation_of_the_released_code():
    m = build_model(cfg(), n_classes=3, normalize="batch")
    out = m(torch.randn(5, 1, 64, 64))
    # each feature, not each clip, has unit norm across the batch
    assert torch.allclose(out.representation.norm(dim=0), torch.ones(128), atol=1e-5)
    assert torch.allclose(out.projection.norm(dim=0), torch.ones(64), atol=1e-5)
    with pytest.raises(ValueError, match="normalize"):
        build_model(cfg(), n_classes=3, normalize="layer")


def test_tiny_is_far_cheaper_than_resnet18():
    x = torch.randn(1, 1, 64, 157)
    flops = {}
    for backbone in ("tiny", "resnet18"):
        m = build_model(cfg(backbone), n_classes=10).eval()   # one clip: BatchNorm needs eval mode
        with FlopCounterMode(display=False) as counter:
            m(x)
        flops[backbone] = counter.get_total_flops()
    assert flops["tiny"] * 10 < flops["resnet18"]


def test_weights_none_is_random():
    a = build_model(cfg("resnet18"), 5).encoder.conv1.weight
    b = build_model(cfg("resnet18"), 5).encoder.conv1.weight
    assert not torch.equal(a, b)


def test_tiny_has_no_imagenet_weights():
    with pytest.raises(WeightsError, match="no ImageNet weights for the 'tiny'"):
        build_model(cfg("tiny", "imagenet"), 5)


# -- local weight files ------------------------------------------------------------------

def test_whole_model_state_dict_round_trip(tmp_path):
    torch.manual_seed(1)
    a = build_model(cfg(), n_classes=6).eval()
    a(torch.randn(8, 1, 64, 64))  # nothing to learn, but make the check cover BN buffers too
    path = tmp_path / "model.pt"
    torch.save(a.state_dict(), path)
    b = build_model(cfg(weights=path), n_classes=6).eval()
    x = torch.randn(3, 1, 64, 64)
    for u, v in zip(a(x), b(x)):
        assert torch.equal(u, v)


def test_backbone_state_dict_round_trip_with_training_checkpoint_wrappers(tmp_path):
    torch.manual_seed(2)
    net = torchvision.models.resnet18(weights=None)  # a torchvision file, fc included
    path = tmp_path / "resnet18.pth"
    # as a training checkpoint, saved from nn.DataParallel (keys "module.*")
    torch.save({"model": {"module." + k: v for k, v in net.state_dict().items()}, "epoch": 3}, path)
    m = build_model(cfg("resnet18", path, channels=3), n_classes=5)
    for k, v in m.encoder.state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k


def test_rgb_filters_folded_into_one_channel_are_exact_for_grey_input(tmp_path):
    torch.manual_seed(3)
    rgb = build_model(cfg("resnet18", channels=3), n_classes=5).eval()
    path = tmp_path / "encoder.pth"
    torch.save(rgb.encoder.state_dict(), path)
    grey = build_model(cfg("resnet18", path, channels=1).override(mono_first_conv="sum"), n_classes=5).eval()
    assert grey.encoder.conv1.weight.shape[1] == 1
    assert torch.allclose(grey.encoder.conv1.weight, rgb.encoder.conv1.weight.sum(dim=1, keepdim=True))
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        h1 = grey.represent(x)
        h3 = rgb.represent(x.expand(-1, 3, -1, -1))
    assert torch.allclose(h1, h3, atol=1e-5)


def test_one_channel_readings_of_three_channel_weights(tmp_path):
    """'fresh' keeps a new random first convolution and every other weight; 'mean' is a third of 'sum'."""
    torch.manual_seed(5)
    rgb = build_model(cfg("resnet18", channels=3), n_classes=5)
    path = tmp_path / "encoder.pth"
    torch.save(rgb.encoder.state_dict(), path)
    torch.manual_seed(6)
    fresh = build_model(cfg("resnet18", path, channels=1).override(mono_first_conv="fresh"), n_classes=5)
    torch.manual_seed(6)
    untouched = build_model(cfg("resnet18", channels=1), n_classes=5)
    assert torch.equal(fresh.encoder.conv1.weight, untouched.encoder.conv1.weight)   # torchvision's own init
    for k, v in rgb.encoder.state_dict().items():
        if k != "conv1.weight":
            assert torch.equal(fresh.encoder.state_dict()[k], v), k
    mean = build_model(cfg("resnet18", path, channels=1).override(mono_first_conv="mean"), n_classes=5)
    assert torch.allclose(mean.encoder.conv1.weight * 3, rgb.encoder.conv1.weight.sum(dim=1, keepdim=True), atol=1e-6)
    assert preset("paper").model.mono_first_conv == "fresh"


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(WeightsError, match="no such file .*nowhere.pt"):
        build_model(cfg(weights=tmp_path / "nowhere.pt"), 5)


def test_keys_of_another_backbone_are_rejected(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(build_model(cfg("tiny"), 5).encoder.state_dict(), path)
    with pytest.raises(WeightsError, match=r"does not match a resnet18 backbone: missing keys .*unexpected keys"):
        build_model(cfg("resnet18", path), 5)


def test_other_number_of_classes_is_rejected(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(build_model(cfg(), 10).state_dict(), path)
    with pytest.raises(WeightsError, match=r"shape mismatches .*classifier.weight: file \(10, 128\) vs model \(50, 128\)"):
        build_model(cfg(weights=path), 50)


def test_one_channel_file_cannot_feed_a_three_channel_model(tmp_path):
    path = tmp_path / "grey.pt"
    torch.save(build_model(cfg(channels=1), 5).state_dict(), path)
    with pytest.raises(WeightsError, match="saved for 1-channel input"):
        build_model(cfg(weights=path, channels=3), 5)


def test_a_file_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a pickle")
    with pytest.raises(WeightsError, match="could not read weights file"):
        build_model(cfg(weights=path), 5)


# -- ImageNet weights through the torch hub cache -------------------------------------------

@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache in tmp_path, and every network connection refused (and counted)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert torch.hub.get_dir().startswith(str(tmp_path)), "torch.hub.set_dir() was called elsewhere"
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_offline_imagenet_fails_at_once_naming_file_folder_and_url(offline):
    with pytest.raises(WeightsError) as e:
        build_model(cfg("resnet18", "imagenet", channels=3), 5)
    message = str(e.value)
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    assert "resnet18-f37072fd.pth" in message and folder in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert len(offline) == 1  # one attempt, no retries


def test_imagenet_weights_are_read_from_the_cache_without_network(offline):
    torch.manual_seed(4)
    net = torchvision.models.resnet18(weights=None)
    path = model_module.imagenet_cache_path("resnet18")
    assert path.name == "resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1 file
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    m = build_model(cfg("resnet18", "imagenet", channels=1).override(mono_first_conv="sum"), 5)
    assert offline == []
    assert torch.allclose(m.encoder.conv1.weight, net.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(m.encoder.layer4[1].conv2.weight, net.layer4[1].conv2.weight)


class _FakeWeights:
    def __init__(self, url):
        self.url = url


def _serve(tmp_path, monkeypatch, payload: bytes, name: str):
    """Serve `payload` at a file:// URL in place of torchvision's download URL."""
    served = tmp_path / "server" / name
    served.parent.mkdir()
    served.write_bytes(payload)
    monkeypatch.setattr(model_module, "imagenet_weights", lambda backbone: _FakeWeights(served.as_uri()))
    return served


def test_imagenet_download_lands_in_the_cache(tmp_path, monkeypatch, offline):
    torch.manual_seed(5)
    net = torchvision.models.resnet18(weights=None)
    blob = tmp_path / "blob.pth"
    torch.save(net.state_dict(), blob)
    payload = blob.read_bytes()
    name = f"resnet18-{hashlib.sha256(payload).hexdigest()[:8]}.pth"
    _serve(tmp_path, monkeypatch, payload, name)
    m = build_model(cfg("resnet18", "imagenet", channels=3), 5)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", name)
    assert open(cached, "rb").read() == payload
    assert torch.equal(m.encoder.conv1.weight, net.conv1.weight)
    assert os.listdir(os.path.dirname(cached)) == [name]  # no partial file left


def test_corrupt_download_is_rejected_and_not_cached(tmp_path, monkeypatch, offline):
    _serve(tmp_path, monkeypatch, b"truncated", "resnet18-00000000.pth")
    with pytest.raises(WeightsError, match="corrupt"):
        build_model(cfg("resnet18", "imagenet", channels=3), 5)
    assert os.listdir(os.path.join(torch.hub.get_dir(), "checkpoints")) == []
