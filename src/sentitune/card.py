"""The run's model card (RUN_DIR/README.md), with the Hub's metadata on top.

The YAML header is what the Hugging Face Hub reads (`huggingface_hub.ModelCard.load`):
library and pipeline tag, base model, datasets, license, tags and the validation metrics
as a model-index, so a pushed `model/` is searchable and shows its scores. Built with
huggingface_hub's own `ModelCardData`, so the header is in the Hub's format by construction.
"""

from __future__ import annotations

from pathlib import Path

from sentitune.config import RunConfig
from sentitune.dataset.sources import BUILTINS
from sentitune.dataset.splits import Splits
from sentitune.model import ALIASES

# The bundled MiniLM is a copy of this hub model.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# A fine-tuned model keeps its base model's license; these are the aliases' licenses.
LICENSES = {
    MINILM_HUB_ID: "apache-2.0",
    "distilbert-base-uncased": "apache-2.0",
    "bert-base-uncased": "apache-2.0",
    "roberta-base": "mit",
    "albert-base-v2": "apache-2.0",
}
# Validation metrics shown in the model-index, when the task has them.
CARD_METRICS = ("accuracy", "f1", "f1_macro", "f1_micro", "precision", "recall")


def base_model_id(model: str) -> str | None:
    """The hub id the run started from; None for a local folder (the Hub would reject it)."""
    if model == "minilm":
        return MINILM_HUB_ID
    if model in ALIASES:
        return ALIASES[model]
    return None if Path(model).expanduser().exists() else model


def card_data(config: RunConfig, splits: Splits, metrics: dict, name: str):
    """The Hub metadata of a run (a `huggingface_hub.ModelCardData`)."""
    from huggingface_hub import EvalResult, ModelCardData

    base = base_model_id(config.model.model)
    builtin = BUILTINS.get(config.data.dataset)
    dataset_name = Path(config.data.dataset).name
    validation = metrics["validation"]
    results = [
        EvalResult(task_type="text-classification", task_name="Text Classification",
                   dataset_type=builtin.hub_id if builtin else dataset_name,
                   dataset_name=dataset_name,
                   dataset_config=builtin.hub_config if builtin else None,
                   dataset_split="validation", metric_type=metric,
                   metric_name=f"validation {metric}", metric_value=round(validation[metric], 4))
        for metric in CARD_METRICS if isinstance(validation.get(metric), float)
    ]
    return ModelCardData(
        model_name=name,
        library_name="transformers",
        pipeline_tag="text-classification",
        base_model=base,
        datasets=[builtin.hub_id] if builtin else None,
        license=LICENSES.get(base),
        metrics=[result.metric_type for result in results],
        tags=["sentitune", "sentiment-analysis", "text-classification", splits.task,
              config.training.method],
        eval_results=results,
    )


def model_card(config: RunConfig, splits: Splits, metrics: dict, name: str = "sentitune") -> str:
    """README.md of a run: Hub metadata, then what it is, how it scored and how to use it."""
    v = metrics["validation"]
    t = config.training
    data = card_data(config, splits, metrics, name)
    license_line = (f"- License: {data.license}, the base model's" if data.license
                    else "- License: that of the base model")
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# Sentiment classifier: {config.model.model} fine-tuned on "
        f"{Path(config.data.dataset).name}",
        "",
        f"- Task: {splits.task}; labels: {', '.join(splits.labels)}",
        f"- Method: {t.method}; trainable parameters {metrics['trainable_params']:,} of "
        f"{metrics['total_params']:,}",
        f"- Data: {len(splits.train):,} training and {len(splits.validation):,} validation rows "
        f"(seed {t.seed}, max length {config.data.max_length} tokens, truncation "
        f"{config.data.truncation})",
        f"- Training: lr {t.learning_rate}, batch {t.batch_size}, {t.epochs:g} epochs, "
        f"weight decay {t.weight_decay}, warmup {t.warmup_ratio:.0%}, {t.scheduler} "
        f"schedule, best epoch "
        f"{metrics['best_epoch']}; optimizer {t.optimizer}"
        + (f", layer decay {t.layer_decay:g}" if t.layer_decay != 1 else ""),
        *([f"- Augmented: {t.augment} copies per training text (`augmentation` in config.yaml "
           "says how)"] if t.augment else []),
        *([f"- Distilled from: {', '.join(Path(t).name for t in metrics['distilled_from'])} "
           "(soft targets; `distillation` in config.yaml says how)"]
          if metrics.get("distilled_from") else []),
        license_line,
        "",
        "## Validation",
        "",
        "| accuracy | F1 | precision | recall | loss |",
        "|---|---|---|---|---|",
        f"| {v['accuracy']:.4f} | {v['f1']:.4f} | {v['precision']:.4f} | {v['recall']:.4f} "
        f"| {v['loss']:.4f} |",
        "",
        "## Use",
        "",
        "```python",
        "from sentitune import Classifier",
        "clf = Classifier.from_pretrained('RUN_DIR')",
        "clf.predict(['What a wonderful film.'])",
        "",
        "# or with transformers alone",
        "from transformers import pipeline",
        "pipeline('text-classification', model='RUN_DIR/model')('What a wonderful film.')",
        "```",
        "",
        "## Limitations",
        "",
        "Accuracy is measured on the validation split above; expect lower accuracy on other "
        "domains, on sarcasm, negation and mixed sentiment. Run `sentitune evaluate` for "
        "per-slice errors and send low-confidence predictions (`needs_review`) to a person.",
        "",
    ]
    return "\n".join(lines)
