"""The run's README.md opens with metadata the Hugging Face Hub reads, checked with
huggingface_hub's own parser."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from sentitune.card import model_card
from sentitune.run import Run


def results(data) -> dict[str, float]:
    return {result.metric_type: result.metric_value for result in data.eval_results}


def test_run_readme_has_hub_metadata(tiny_run_dir):
    run = Run.open(tiny_run_dir)
    card = ModelCard.load(tiny_run_dir / "README.md")
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification"
    assert data.model_name == tiny_run_dir.name
    assert {"sentitune", "sentiment-analysis", "binary", "full"} <= set(data.tags)
    validation = run.metrics["validation"]
    assert results(data) == {name: pytest.approx(validation[name], abs=5e-5)
                             for name in ("accuracy", "f1", "f1_macro", "precision", "recall")}
    assert {r.dataset_split for r in data.eval_results} == {"validation"}
    # A local base model has no hub id (the Hub would reject a path) and no known license.
    assert data.base_model is None and data.license is None
    assert "# Sentiment classifier" in card.text and "## Validation" in card.text


def test_alias_and_builtin_data_name_hub_ids_and_license(tiny_run_dir):
    """A run from a known base model on a built-in dataset names both as on the Hub."""
    run = Run.open(tiny_run_dir)
    config = run.config.replace(model="distilbert", dataset="sst2")
    data = ModelCard(model_card(config, run.rebuilt_splits(), run.metrics, "sst2-run")).data
    assert data.base_model == "distilbert-base-uncased"
    assert data.license == "apache-2.0"
    assert data.datasets == ["nyu-mll/glue"]
    assert {(r.dataset_type, r.dataset_config) for r in data.eval_results} == {
        ("nyu-mll/glue", "sst2")}
    roberta = ModelCard(model_card(config.replace(model="roberta"), run.rebuilt_splits(),
                                   run.metrics)).data
    assert (roberta.base_model, roberta.license) == ("roberta-base", "mit")


@pytest.mark.slow
def test_minilm_run_card(minilm_sst2_run):
    data = ModelCard.load(minilm_sst2_run / "README.md").data
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.license == "apache-2.0" and data.datasets == ["nyu-mll/glue"]
    assert results(data)["accuracy"] == pytest.approx(
        Run.open(minilm_sst2_run).metrics["validation"]["accuracy"], abs=5e-5)
