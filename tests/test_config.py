import pytest

from soundclr.config import FIELD_SECTION, Config, ConfigError, preset


def test_paper_preset_holds_the_released_codes_values():
    c = preset("paper", dataset="esc50").resolved()
    assert c.data.sample_rate == 44100 and c.data.clip_samples == 220500
    assert (c.features.n_fft, c.features.hop_length, c.features.n_mels, c.features.window) == (1024, 512, 128, "hamming")
    assert (c.augment.freq_masks, c.augment.freq_mask_width, c.augment.time_masks, c.augment.time_mask_width) == (2, 32, 1, 32)
    assert c.augment.mask_fill == "zero" and c.features.channels == 3
    assert (c.model.backbone, c.model.weights, c.model.projection_dim) == ("resnet50", "imagenet", 64)
    assert (c.optim.optimizer, c.optim.lr, c.optim.weight_decay) == ("adamw", 5e-4, 1e-3)
    assert (c.optim.warmup_epochs, c.optim.gamma, c.optim.epochs, c.optim.batch_size) == (10, 0.98, 800, 128)
    assert (c.optim.temperature, c.optim.alpha, c.optim.stage2_gamma) == (0.05, 0.5, 0.995)
    us = preset("paper", dataset="us8k").resolved()
    assert us.data.clip_samples == 176400 and us.optim.lr == 1e-4 and us.n_folds == 10


def test_override_converts_strings_and_rejects_unknown_names():
    c = preset("quick").override(lr="1e-3", freq_masks="0", scale="false", val_fold="none", **{"optim.alpha": 0.25})
    assert c.optim.lr == 1e-3 and c.augment.freq_masks == 0 and c.augment.scale is False
    assert c.run.val_fold is None and c.optim.alpha == 0.25
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'.*valid settings are.*lr"):
        c.override(learning_rate=1)
    with pytest.raises(ConfigError, match="window='hanning'.*hamming, hann"):
        c.override(window="hanning")
    with pytest.raises(ConfigError, match="test_fold=6.*folds 1..5"):
        c.override(test_fold=6)
    with pytest.raises(ConfigError, match="expected int"):
        c.override(epochs="many")


def test_field_names_are_unique_and_round_trip():
    assert len(FIELD_SECTION) == sum(1 for _ in FIELD_SECTION)
    c = preset("quick", dataset="esc10", seed=3)
    assert Config.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown settings"):
        Config.from_dict({"run": {"bogus": 1}})


def test_identity_changes_with_what_a_run_computes_only():
    c = preset("quick")
    assert c.identity() == c.override(device="cpu", data_root="/elsewhere").identity()
    assert c.identity() != c.override(alpha=0.25).identity()
    assert c.identity() != c.override(seed=1).identity()
