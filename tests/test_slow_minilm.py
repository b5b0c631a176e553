"""Slow integration tests: the real bundled MiniLM on real SST-2 data."""

from __future__ import annotations

import json

import pytest

from sentitune.predict import Classifier

pytestmark = pytest.mark.slow


def test_real_minilm_learns_well_above_chance(minilm_sst2_run):
    metrics = json.loads((minilm_sst2_run / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] > 0.70  # chance is 0.5 on balanced SST-2 dev
    clf = Classifier.from_pretrained(minilm_sst2_run)
    results = clf.predict(["An utterly delightful, moving film.",
                           "A dull, lifeless and painfully boring mess."])
    assert [r["label"] for r in results] == ["positive", "negative"]
