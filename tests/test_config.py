"""Presets and config files: each one loads, validates and says what it is for."""

from __future__ import annotations

import pytest

from sentitune.config import PRESETS_DIR, available_presets, load_preset
from sentitune.dataset import BUILTINS
from sentitune.errors import SentituneError
from sentitune.model import ALIASES


@pytest.mark.parametrize("name", available_presets())
def test_every_preset_loads_a_builtin_dataset_and_a_known_model(name):
    config = load_preset(name)
    assert config.data.dataset in BUILTINS
    assert config.model.model in {*ALIASES, "minilm"}
    # A preset is a recipe someone will copy: its first lines say where its numbers come from.
    assert (PRESETS_DIR / f"{name}.yaml").read_text().startswith("#")


def test_multi_label_and_unbalanced_presets_weight_their_classes():
    for name in ("emotion-minilm", "goemotions-minilm"):
        assert load_preset(name).training.class_weights == "auto"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: {learning_rate: 0.1}\n", "belongs in section 'training'"),
        ("data: [1, 2]\n", "must be a mapping"),
        ("data: {dataset: sst2\n", "not valid YAML"),
        ("training: {warmup_ratio: 1.5}\n", "--warmup-ratio must be in [0, 1)"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(SentituneError, match=message.replace("[", r"\[").replace(")", r"\)")):
        load_preset(str(path))


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(SentituneError, match="goemotions-minilm"):
        load_preset("no-such-preset")
