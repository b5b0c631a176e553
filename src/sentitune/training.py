"""Training: a RunConfig in, a complete run directory out.

Built on the transformers Trainer (AdamW, linear warmup/decay, evaluation and a
checkpoint every epoch, the best epoch restored at the end). What sentitune adds is
what tutorials leave out: texts are padded per batch and batched by similar length
(far less padding than `padding="max_length"`), early stopping, class weights, LoRA,
and a run directory that every later stage reads.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentitune import console, distributed, files
from sentitune.card import model_card
from sentitune.config import (
    LORA_SETTINGS,
    SCHEDULERS,
    RunConfig,
    TrainingConfig,
    checkpoint_interval,
    make_config,
    resolved,
)
from sentitune.dataset.augment import augmented_copies
from sentitune.dataset.splits import Splits, data_problems, load_splits
from sentitune.decision import Decision, fit_label_thresholds
from sentitune.errors import SentituneError
from sentitune.fitting import (
    _warn_if_not_learned,
    bf16_agreement,
    fit_decision,
    validation_logits,
)
from sentitune.hardware import PeakRss, cpu_bf16_flags, peak_memory_mb, resolve_precision
from sentitune.metrics import classification_metrics, multi_hot, probabilities
from sentitune.model import (
    apply_lora,
    check_max_length,
    load_model,
    load_tokenizer,
    parameter_counts,
    quiet_transformers,
)
from sentitune.optim import build_optimizer
from sentitune.plots import plot_curves
from sentitune.run import Run, check_resume, versions
from sentitune.tracking import Tracker
from sentitune.truncation import transformers_encoding


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    metrics: dict
    # The trained model in memory: best epoch, temperature folded in; for LoRA the peft
    # model with its adapter (model/ holds a merged copy).
    model: Any = field(default=None, repr=False, compare=False)


def tokenize(frame, tokenizer, max_length: int, task: str, n_labels: int, pad_to_max: bool,
             truncation: str = "head"):
    """pandas rows → a datasets.Dataset of token ids, labels and lengths."""
    import datasets

    encoded = transformers_encoding(tokenizer, list(frame["text"]), max_length, truncation)
    if pad_to_max:
        encoded = tokenizer.pad(encoded, padding="max_length", max_length=max_length)
    columns = dict(encoded)
    if task == "multilabel":
        columns["labels"] = multi_hot(list(frame["label"]), n_labels).tolist()
    else:
        columns["labels"] = [int(v) for v in frame["label"]]
    # Real token counts (without padding): used for length grouping and padding stats.
    columns["length"] = [int(sum(mask)) for mask in encoded["attention_mask"]]
    return datasets.Dataset.from_dict(columns)


def class_weights(splits: Splits, setting: str) -> np.ndarray | None:
    """Inverse-frequency weights (single-label) or positive weights (multi-label)."""
    if setting == "none":
        return None
    n = len(splits.labels)
    if setting == "auto":
        if splits.task == "multilabel":
            positives = multi_hot(list(splits.train["label"]), n).sum(axis=0)
            return (len(splits.train) - positives) / np.maximum(positives, 1)
        counts = np.bincount(np.asarray(splits.train["label"], dtype=int), minlength=n)
        return len(splits.train) / (n * np.maximum(counts, 1))
    path = Path(setting)
    if not path.is_file():
        raise SentituneError(f"--class-weights must be none, auto or a JSON file; got '{setting}'")
    try:
        weights = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise SentituneError(
            f"{path} is not JSON; give a list of {n} weights or an object label -> weight"
        ) from None
    if isinstance(weights, dict):
        missing = [name for name in splits.labels if name not in weights]
        unknown = [name for name in weights if name not in splits.labels]
        if missing or unknown:
            problem = (f"no weight for label(s) {', '.join(missing)}" if missing
                       else f"unknown label(s) {', '.join(unknown)}")
            raise SentituneError(f"{path}: {problem}; labels: {', '.join(splits.labels)}")
        weights = [weights[name] for name in splits.labels]
    if not isinstance(weights, list) or len(weights) != n:
        raise SentituneError(f"{path}: expected {n} weights (one per label), got {weights!r}")
    if not all(isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w)
               and w > 0 for w in weights):
        raise SentituneError(f"{path}: weights must be positive numbers, got {weights}")
    return np.asarray(weights, dtype=np.float32)


def _weighted_loss(weights: np.ndarray, task: str):
    import torch

    tensor = torch.tensor(weights, dtype=torch.float32)

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"]
        w = tensor.to(logits.device)
        if task == "multilabel":
            return torch.nn.functional.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), pos_weight=w
            )
        return torch.nn.functional.cross_entropy(logits, labels, weight=w.to(logits.dtype))

    return loss


def _warn_unused_lora(settings: TrainingConfig) -> None:
    defaults = TrainingConfig()
    changed = [
        name for name in LORA_SETTINGS
        if name != "merge_lora" and getattr(settings, name) != getattr(defaults, name)
    ]
    if settings.method == "full" and changed:
        console.warn(f"{', '.join(console.option(c) for c in changed)} ignored: "
                     f"{console.option('method')} is full (use "
                     f"{console.option('method', 'lora')})")


def _warn_unweighted_multilabel(task: str, settings: TrainingConfig) -> None:
    if task == "multilabel" and settings.class_weights == "none":
        console.warn(
            "multi-label training without class weights often learns only the frequent labels "
            "(GoEmotions on MiniLM: test macro-F1 0.08 without, 0.28 with); "
            f"add {console.option('class_weights', 'auto')}")


def _history(log_history: list[dict]) -> list[dict]:
    """Trainer's log → one row per epoch."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        epoch = math.ceil(entry["epoch"] - 1e-9)
        row = rows.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
        # Every validation metric (history.csv keeps the usual ones; any can pick the best).
        row.update({"val_" + key.removeprefix("eval_"): value for key, value in entry.items()
                    if key.startswith("eval_") and isinstance(value, float)})
    return [rows[k] for k in sorted(rows) if "val_loss" in rows[k]]


def default_output(config: RunConfig) -> Path:
    return Path("runs") / f"{Path(config.data.dataset).stem}-{Path(config.model.model).name}"


def train(
    config: RunConfig | str | Path | None = None,
    output: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_data: Callable[[Splits], None] | None = None,
    callbacks: Sequence[Any] = (),
    teaching: Any = None,
    **overrides: Any,
) -> TrainResult:
    """Fine-tune and publish a complete run directory at `output` (default runs/DATA-MODEL).

    `config` is a RunConfig, a preset name or a YAML file; `overrides` set single
    fields (`learning_rate=1e-4`), as `sentitune train --config X --learning-rate 1e-4`.
    `on_data` sees the loaded splits (task, label names) before the model loads: the CLI
    prints them, so an inferred task is visible before minutes of training. `callbacks`
    are extra transformers TrainerCallbacks (`sentitune tune` prunes trials with one).
    `teaching` makes the run a distilled student (`sentitune.distillation.Teaching`: it
    cuts the model's layers, adds soft targets and unlabeled rows, and gives the loss).

    Under `torchrun` / `accelerate launch` every process calls this; rank 0 alone writes
    and publishes the run (see `sentitune.distributed`) and every rank returns it.
    """
    staged: list[Run] = []  # its lock is released however training ends
    try:
        return _train(config, output, staged, resume=resume, overwrite=overwrite,
                      progress=progress, on_data=on_data, callbacks=callbacks,
                      teaching=teaching, **overrides)
    finally:
        for run in staged:
            run.release()


@dataclass(frozen=True)
class _Session:
    """What every step of one `train` call shares: the settings and where it runs."""

    config: RunConfig
    output: Path
    precision: Any  # hardware.Precision
    tracker: Tracker
    teaching: Any  # distillation.Teaching or None
    processes: Any  # accelerate's PartialState
    world: int
    is_main: bool
    backend: str


@dataclass(frozen=True)
class _Prepared:
    """The data, tokenized, and the model ready to train."""

    splits: Splits
    weights: np.ndarray | None
    tokenizer: Any
    model: Any
    train_set: Any  # datasets.Dataset
    val_set: Any
    trainable: int
    total: int
    augmentation: dict  # what --augment added (empty when off), saved in config.yaml


def _train(
    config: RunConfig | str | Path | None,
    output: str | Path | None,
    staged: list[Run],
    *,
    resume: bool,
    overwrite: bool,
    progress: bool,
    on_data: Callable[[Splits], None] | None,
    callbacks: Sequence[Any],
    teaching: Any = None,
    **overrides: Any,
) -> TrainResult:
    """Settings -> data and model -> staged run -> Trainer -> fitted model -> published run."""
    import torch

    from sentitune import checkpoints

    session = _start(resolved(make_config(config, **overrides)), output, resume, overwrite,
                     teaching)
    # Main process first: a hub download or cache fill happens once, the others reuse it.
    with distributed.peer_failures(), session.processes.main_process_first():
        prepared = _prepare(session, on_data)
    staging = distributed.on_main(lambda: _stage(session, resume, overwrite),
                                  "staging the run")
    if session.is_main:  # the other ranks hold a copy of the object, not the lock
        staged.append(staging)
    trainer, resume_from, sessions, rss = _trainer(session, prepared, staging, resume, progress,
                                                   callbacks)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with rss, distributed.peer_failures():
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    session_totals = checkpoints.totals(sessions.sessions(),
                                        trainer.state.epoch * len(prepared.train_set))
    # The decision and the final metrics are fitted on fp32 logits, as `predict` computes
    # them by default, whatever precision training ran in. Mixed precision left the model's
    # forward wrapped in autocast: unwrap it, for these logits and for the caller.
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    run_dir, metrics, temperature = distributed.on_main(
        lambda: _finish(session, prepared, model, trainer, staging, session_totals),
        "writing the run")
    if not session.is_main and temperature != 1.0:
        from sentitune.model import scale_logits

        scale_logits(model, 1.0 / temperature)  # every rank returns the saved model
    return TrainResult(run_dir, metrics, model)


def _start(config: RunConfig, output: str | Path | None, resume: bool, overwrite: bool,
           teaching: Any) -> _Session:
    """Check what can be checked before any data or model loads; start the processes."""
    import torch

    settings = config.training
    _warn_unused_lora(settings)
    precision = resolve_precision(settings.precision)
    quiet_transformers()
    output = Path(output) if output is not None else default_output(config)
    if output.exists() and not overwrite:  # checked again when staging, after the data loads
        raise SentituneError(f"{output} already exists; choose another --output or --overwrite")
    if resume:
        check_resume(output, config)
    tracker = Tracker(settings.report_to, output.name)  # a missing extra fails before the data
    processes = distributed.start(cpu=not torch.cuda.is_available())
    # TrainingArguments renews accelerate's shared state: read what we need now.
    return _Session(config, output, precision, tracker, teaching, processes,
                    processes.num_processes, processes.is_main_process,
                    processes.backend or "none")


def _prepare(session: _Session, on_data: Callable[[Splits], None] | None) -> _Prepared:
    """Load and split the data, load the model (LoRA-wrapped, cut by a teaching), tokenize."""
    from transformers import set_seed

    settings, data_config, teaching = (session.config.training, session.config.data,
                                       session.teaching)
    splits = load_splits(data_config, settings.seed)
    if session.world > len(splits.train):
        raise SentituneError(f"{session.world} training processes for {len(splits.train)} "
                             f"training rows; launch at most {len(splits.train)} "
                             "processes or train on more rows")
    if on_data is not None and session.is_main:
        on_data(splits)
    if session.is_main:
        _warn_unweighted_multilabel(splits.task, settings)
        for problem in data_problems(splits, data_config):
            console.warn(problem)
    weights = class_weights(splits, settings.class_weights)
    tokenizer = load_tokenizer(session.config.model.model)
    set_seed(settings.seed)  # the new classification head is initialised from this seed
    model = load_model(session.config.model.model, splits.labels, splits.task)
    if teaching is not None:
        model = teaching.prepare_model(model, tokenizer)
    check_max_length(data_config.max_length, model, tokenizer)
    if settings.method == "lora":
        model = apply_lora(model, settings)
    trainable, total = parameter_counts(model)

    def encode(frame, task: str):
        return tokenize(frame, tokenizer, data_config.max_length, task, len(splits.labels),
                        not settings.dynamic_padding, data_config.truncation)

    copies, augmentation = augmented_copies(
        list(splits.train["text"]), model, tokenizer, settings, teaching is not None,
        splits.task)
    train_rows = splits.train
    if copies.texts and teaching is None:  # labelled by dataset.augment's rules
        train_rows = pd.concat([splits.train[["text", "label"]], pd.DataFrame({
            "text": copies.texts, "label": copies.labels(list(splits.train["label"]))})],
            ignore_index=True)
    train_set = encode(train_rows, splits.task)
    val_set = encode(splits.validation, splits.task)
    if teaching is not None:  # unlabeled rows are tokenized alike; their label is unused
        train_set = teaching.train_set(train_set, splits, lambda texts: encode(
            pd.DataFrame({"text": texts, "label": 0}), "binary"), augmented=copies.texts)
    return _Prepared(splits, weights, tokenizer, model, train_set, val_set, trainable, total,
                     augmentation or {})


def _stage(session: _Session, resume: bool, overwrite: bool) -> Run:
    """The locked staging run; it records its settings at once, so that `--resume` can
    refuse other ones (see `check_resume`)."""
    staging = Run.stage(session.output, resume=resume, overwrite=overwrite)
    if not staging.has_config:  # a student's teaching too (`distillation._check_resume`)
        staging.write_config(session.config, {} if session.teaching is None else
                             {"distillation": session.teaching.record()})
    return staging


def _training_arguments(session: _Session, staging: Run):
    import torch
    from transformers import TrainingArguments

    settings = session.config.training
    return TrainingArguments(
        output_dir=str(staging.checkpoints),
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        num_train_epochs=settings.epochs,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a share of all steps
        lr_scheduler_type=SCHEDULERS[settings.scheduler],
        seed=settings.seed,
        data_seed=settings.seed,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=settings.metric,
        greater_is_better=settings.metric != "loss",
        save_total_limit=2,
        report_to=session.tracker.report_to,
        disable_tqdm=True,  # sentitune.console prints one line per epoch instead
        ddp_timeout=distributed.timeout_s(),
        ddp_find_unused_parameters=False,  # every trainable weight is used each step
        use_cpu=not torch.cuda.is_available(),
        **session.precision.trainer_flags(),
    )


def _metrics_of(splits: Splits) -> Callable[[Any], dict]:
    """The Trainer's `compute_metrics`: every validation metric of an epoch's logits."""

    def compute_metrics(prediction) -> dict:
        probs = probabilities(np.asarray(prediction.predictions, dtype=np.float64),
                              splits.task)
        # Multi-label decisions use thresholds fitted on validation (fit_decision): score
        # every epoch that way, so early stopping and the best epoch judge the model as it
        # will decide, not at a 0.5 cut that rare labels never reach early on.
        thresholds = (fit_label_thresholds(probs, prediction.label_ids).thresholds
                      if splits.task == "multilabel" else None)
        found = classification_metrics(prediction.label_ids, probs, splits.task, splits.labels,
                                       thresholds)
        return {k: v for k, v in found.items() if isinstance(v, float)}

    return compute_metrics


def _trainer_class():
    """The transformers Trainer, with length-grouped batches in an order that a resumed run
    draws again (see `checkpoints.EpochSeededLengthSampler`)."""
    from transformers import Trainer

    from sentitune import checkpoints

    class SentituneTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            # The dataset as given: the one passed here has lost its `length` column.
            lengths = self.args.length_column_name
            if (self.args.train_sampling_strategy != "group_by_length"
                    or lengths not in self.train_dataset.column_names):
                return super()._get_train_sampler(train_dataset)
            return checkpoints.EpochSeededLengthSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                list(self.train_dataset[lengths]), self.args.data_seed)

    return SentituneTrainer


def _trainer(session: _Session, prepared: _Prepared, staging: Run, resume: bool,
             progress: bool, callbacks: Sequence[Any]):
    """The Trainer, the checkpoint to resume from (None: from the start), the session log
    its checkpoints carry and the memory sampler."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback

    from sentitune import checkpoints

    settings, splits, teaching = session.config.training, prepared.splits, session.teaching
    args = _training_arguments(session, staging)  # renews accelerate's state first
    resume_from = distributed.on_main(
        lambda: checkpoints.resumable(staging.checkpoints) if resume else None,
        "finding a checkpoint to resume")
    early_stopping = [EarlyStoppingCallback(settings.patience)] if settings.patience else []
    rss = PeakRss()
    sessions = checkpoints.SessionLog(checkpoints.earlier_sessions(resume_from),
                                      lambda: peak_memory_mb(rss))
    saving = [checkpoints.Interval(*checkpoint_interval(settings.checkpoint_every)), sessions]
    if teaching is not None:
        loss = teaching.loss(splits.task, prepared.weights)
    else:
        loss = None if prepared.weights is None else _weighted_loss(prepared.weights,
                                                                     splits.task)
    trainer = _trainer_class()(
        model=prepared.model,
        args=args,
        train_dataset=prepared.train_set,
        eval_dataset=prepared.val_set,
        processing_class=prepared.tokenizer,
        data_collator=DataCollatorWithPadding(prepared.tokenizer),
        compute_metrics=_metrics_of(splits),
        compute_loss_func=loss,
        optimizers=(build_optimizer(prepared.model, settings), None),  # the schedule: from args
        callbacks=[*early_stopping, *saving, *callbacks,
                   *([console.epoch_callback(settings.metric)] if progress and session.is_main
                     else [])],
    )
    session.tracker.attach(trainer, staging)
    trainer.remove_callback(PrinterCallback)  # no raw log dicts on stdout
    return trainer, resume_from, sessions, rss


def _finish(session: _Session, prepared: _Prepared, model, trainer, staging: Run,
            session_totals: dict) -> tuple[Path, dict, float]:
    """Rank 0 alone: fit the decision on every validation row, write and publish."""
    settings, splits = session.config.training, prepared.splits
    val_set = prepared.val_set
    logits = validation_logits(model, val_set, prepared.tokenizer, settings.eval_batch_size)
    label_ids = np.asarray(val_set["labels"])
    decision, calibration = fit_decision(model, logits, label_ids, splits.task)
    probs = probabilities(logits / decision.temperature, splits.task)
    thresholds = decision.label_thresholds
    validation = classification_metrics(label_ids, probs, splits.task, splits.labels,
                                        None if thresholds is None else np.asarray(thresholds))
    _warn_if_not_learned(validation, splits.task, splits.labels, settings)
    history = _history(trainer.state.log_history)

    _save_model(model, prepared.tokenizer, staging.path, settings)
    files.follow_umask(staging.path)
    _write_records(session, prepared, staging, decision, history)
    metrics = _run_metrics(session, prepared, history, validation, calibration,
                           session_totals)
    if session.precision.device == "cuda" or cpu_bf16_flags():  # emulated bf16 is slower
        metrics["bf16_agreement"] = bf16_agreement(
            model, val_set, prepared.tokenizer, settings.eval_batch_size, probs, splits.task)
    staging.write_metrics(metrics)
    staging.write_card(model_card(session.config, splits, metrics, session.output.name))
    session.tracker.log_run(trainer, staging)
    return staging.publish().path, metrics, decision.temperature


def _write_records(session: _Session, prepared: _Prepared, staging: Run, decision: Decision,
                   history: list[dict]) -> None:
    """labels.json, decision.json, config.yaml (with the facts), history.csv, curves.png."""
    config, splits, settings = session.config, prepared.splits, session.config.training
    staging.write_labels(splits.task, splits.labels)
    staging.write_decision(decision)
    staging.write_config(config, {
        "data_fingerprint": splits.fingerprint(),
        "rows": {"train": len(splits.train), "validation": len(splits.validation)},
        "data_notes": splits.notes,
        "precision": session.precision.as_dict(),
        "distributed": {
            "world_size": session.world,
            "backend": session.backend,
            # What one optimizer step sees: per-device batch x processes x accumulation.
            "effective_batch_size": (settings.batch_size * session.world
                                     * settings.gradient_accumulation),
        },
        "versions": versions(),
        **({"augmentation": prepared.augmentation} if prepared.augmentation else {}),
        **({"distillation": session.teaching.record()} if session.teaching is not None
           else {}),
    })
    staging.write_history(history)
    plot_curves(history, staging.path / "curves.png", title=f"{config.model.model} on "
                f"{Path(config.data.dataset).name}")


def _run_metrics(session: _Session, prepared: _Prepared, history: list[dict],
                 validation: dict, calibration: dict, session_totals: dict) -> dict:
    """metrics.json: validation, the best epoch, cost over every session, parameters."""
    import torch

    settings, task, teaching = session.config.training, prepared.splits.task, session.teaching
    return {
        "validation": validation,
        "selection_metric": settings.metric,
        "best_epoch": _best_epoch(history, settings.metric),
        "epochs_run": len(history),
        **session_totals,  # train_runtime_s, train_samples_per_s, peak_memory_mb, sessions
        "train_tokens": int(sum(prepared.train_set["length"])) * settings.epochs,
        "trainable_params": prepared.trainable,
        "total_params": prepared.total,
        "calibration": {} if task == "multilabel" else calibration,
        **({"threshold_fit": calibration} if task == "multilabel" else {}),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        **({"distilled_from": teaching.record()["teachers"]} if teaching is not None else {}),
    }


def _best_epoch(history: list[dict], metric: str) -> int | None:
    key = f"val_{metric}"
    scored = [row for row in history if row.get(key) is not None]
    if not scored:
        return None
    pick = min if metric == "loss" else max
    return pick(scored, key=lambda row: row[key])["epoch"]


def _save_model(model, tokenizer, staging: Path, settings: TrainingConfig) -> None:
    """model/ is always a plain transformers model; LoRA runs also keep adapter/."""
    if settings.method == "lora":
        model.save_pretrained(staging / "adapter")
        tokenizer.save_pretrained(staging / "adapter")
        if not settings.merge_lora:
            return
        # Merge a copy: merging in place would unwrap the trained peft model, which the
        # caller gets back in TrainResult.model.
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(staging / "model", safe_serialization=True)
    tokenizer.save_pretrained(staging / "model")
