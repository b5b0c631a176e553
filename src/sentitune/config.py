"""Typed, frozen configuration: what a run was asked to do, and how a run answers.

Three sections (data, model, training) with a help string on every field. The same
dataclasses are filled from a YAML preset shipped in `sentitune/presets/`, then from
command-line flags,
and the resolved result is saved in every run directory, so a run can be repeated
from its `config.yaml` alone. `InferenceConfig` is the same for the verbs that use a
trained run (predict, evaluate, check, serve): not saved in a run, its None values mean
"the run's own setting".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sentitune import console
from sentitune.errors import SentituneError

PRESETS_DIR = Path(__file__).resolve().parent / "presets"  # package data: works installed
TASKS = ("binary", "multiclass", "multilabel")
METHODS = ("full", "lora")
# LoRA trains ~0.3% of the weights and needs a far higher rate: at 5e-5 it stayed at chance
# on 1,000 SST-2 sentences; 2e-3 matched full fine-tuning within seed noise
# (benchmarks/results/compare-minilm-sst2-cpu).
DEFAULT_LEARNING_RATES = {"full": 5e-5, "lora": 2e-3}
# Which tokens of a long text the model sees, and how inference may score all of them
# (sentitune.truncation holds the rules; the names live here so that reading a config
# never imports tokenizers).
TRUNCATIONS = ("head", "tail", "head+tail")
LONG_TEXT_MODES = ("truncate", "chunk")
# The transformers scheduler behind each --scheduler; every one warms up first.
SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
# The training settings that only --method lora reads.
LORA_SETTINGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "merge_lora")
# Inference engines (sentitune.inference.backends; named here so that building the CLI
# never imports torch).
BACKENDS = ("torch", "torch-bf16", "adapter", "onnx", "onnx-int8")
# Word-attribution methods of sentitune.inference.explanations (predict --explain, explain).
EXPLAIN_METHODS = ("integrated-gradients", "gradient-x-input", "occlusion")
# Experiment trackers `--report-to` hands to the Trainer (sentitune.tracking adds the rest).
TRACKERS = ("tensorboard", "mlflow", "wandb")
# Optimizers `--optimizer` builds (sentitune.optim); SGD needs a rate ~100x AdamW's.
OPTIMIZERS = ("adamw", "adafactor", "sgd")
SGD_LEARNING_RATE = 1e-2
# Text augmentation methods (sentitune.dataset.augment); `train` may only use those whose
# copies' labels it knows, since no teacher relabels its copies there: the label-keeping ones
# (its default) and frames, whose rule gives the label (the measured reasons are in that
# module's docstring). distill's default leaves frames out: they teach the constructions that
# teachers get wrong, so teacher-labelled frames would teach the errors.
AUGMENT_METHODS = ("neighbours", "mask", "ngram", "identity", "negation", "frames")
LABEL_KEEPING_AUGMENTATIONS = ("identity", "mask")
RULE_LABELLED_AUGMENTATIONS = ("frames",)
TRANSFER_SET_AUGMENTATIONS = tuple(m for m in AUGMENT_METHODS
                                   if m not in RULE_LABELLED_AUGMENTATIONS)
# How `distill --unlabeled` texts become rows (sentitune.distillation.read_unlabeled).
UNLABELED_UNITS = ("text", "sentence")


def _help(text: str, default: Any = None, choices: tuple[str, ...] | None = None, *,
          flag: str | None = None) -> Any:
    """A field with its help text (shown by `--help`; the CLI adds the default) and, for
    an enumeration, its choices; `flag` names its CLI flag when that is not --FIELD-NAME.
    A None default is described in the help text itself."""
    return field(default=default, metadata={"help": text, "choices": choices, "flag": flag})


@dataclass(frozen=True)
class DataConfig:
    dataset: str = _help(
        "Built-in name (imdb, sst2, sst5, emotion, goemotions), a CSV/TSV/JSON/JSONL/parquet "
        "file, or an aclImdb/ folder.",
        "sst2",
    )
    text_column: str | None = _help("Column holding the text; none: guessed.")
    label_column: str | None = _help("Column holding the label; none: guessed.")
    validation_data: str | None = _help(
        "Separate validation file; none: the source's own split or a stratified hold-out."
    )
    train_samples: int | None = _help("Seeded, stratified subset of training rows; none: all.")
    val_samples: int | None = _help("Seeded, stratified subset of validation rows; none: all.")
    val_fraction: float = _help(
        "Share of training rows held out when the source has no validation split.", 0.1
    )
    max_length: int = _help("Longest input in tokens; longer texts are truncated.", 128)
    task: str | None = _help("The task; none: inferred from the labels.", None, TASKS)
    clean_html: bool = _help("Strip HTML tags such as IMDb's <br /> and unescape entities.", True)
    drop_duplicates: bool = _help("Drop exact duplicate texts inside the training split.", False)
    # Long texts: saved in the run, honoured by training and every consumer.
    truncation: str = _help(
        "Tokens kept from a text over max_length: head (first), tail (last), head+tail (first "
        "quarter and last three quarters of the budget; Sun et al. 2019, best on IMDb).",
        "head", TRUNCATIONS)
    long_text: str = _help(
        "Inference on texts over max_length: truncate (per --truncation), or chunk (score "
        "every overlapping window and average their logits); predict/evaluate/serve can "
        "override it.", "truncate", LONG_TEXT_MODES)
    stride: int | None = _help(
        "--long-text chunk: tokens shared by neighbouring windows; none: a quarter of "
        "max_length.")
    extra_data: tuple[str, ...] = _help(
        "Extra labelled rows for the training split only, several allowed: label stores "
        "(labels.db, postgresql://...) or files such as `sentitune labels export` writes; a "
        "training row with the same text gives way to them; none: no extra rows.", ())


@dataclass(frozen=True)
class ModelConfig:
    model: str = _help(
        "Alias (minilm, distilbert, bert, roberta, albert), hub id, local directory, or a "
        "run directory: its fine-tuned model is trained further (e.g. on IMDb, then SST-2).",
        "minilm")


@dataclass(frozen=True)
class TrainingConfig:
    method: str = _help("full (all weights) or lora (low-rank adapters via peft).", "full",
                        METHODS)
    learning_rate: float | None = _help(
        "Peak learning rate; none: the method's default (full 5e-5, lora 2e-3; with "
        "--optimizer sgd 1e-2).")
    batch_size: int = _help("Training batch size per step.", 32)
    eval_batch_size: int = _help("Batch size for validation.", 64)
    epochs: float = _help("Training epochs.", 3.0)
    weight_decay: float = _help("Weight decay (not applied to biases and LayerNorm).", 0.01)
    optimizer: str = _help(
        "adamw (torch's fused AdamW), adafactor (transformers' Adafactor, factored second "
        "moments: less optimizer memory) or sgd (torch SGD, Nesterov momentum 0.9).", "adamw")
    layer_decay: float = _help(
        "Layer-wise learning-rate decay in (0, 1]: the head trains at the full rate, each "
        "layer below at this factor times the one above, the embeddings lowest (ELECTRA; "
        "Sun et al. 2019 found 0.95 best for BERT); 1: off.", 1.0)
    augment: int = _help(
        "Augmented copies per training text, added to the training set (0: off); see "
        "--augment-methods.", 0)
    augment_methods: tuple[str, ...] | None = _help(
        "How the copies are made, several allowed: neighbours (words swapped for their "
        "nearest neighbours in the model's input embeddings), mask (words masked), ngram "
        "(an n-gram of the text, Tang et al. 2019), identity (identity terms swapped: "
        "she/he, Muslim/Christian...), negation (a negation added or removed), frames (the "
        "text inside a sentence that negates, questions or affirms it, or names an identity). "
        "train takes identity, mask (the copy keeps its label) and, on binary tasks, frames "
        "(the frame's rule labels it); distill takes all (its teachers label the copies). none: "
        "train identity,mask; distill all but frames.", None, AUGMENT_METHODS)
    warmup_ratio: float = _help("Share of steps spent warming the learning rate up.", 0.1)
    scheduler: str = _help("Learning rate after warmup: linear decay to 0, cosine decay, or "
                           "constant.", "linear", tuple(SCHEDULERS))
    gradient_accumulation: int = _help("Steps to accumulate before each optimizer update.", 1)
    seed: int = _help("Seed for data order, subsets, dropout and the new head.", 42)
    patience: int | None = _help("Stop after this many epochs without improvement; none: off.")
    metric: str = _help(
        "Validation metric that picks the best epoch and early stopping. Macro-F1 by default: "
        "a model that predicts one class cannot win it, unlike accuracy or positive-class F1.",
        "f1_macro", ("f1_macro", "f1", "accuracy", "f1_weighted", "loss"))
    group_by_length: bool = _help("Batch texts of similar length together (less padding).", True)
    dynamic_padding: bool = _help("Pad each batch to its longest text, not to max_length.", True)
    precision: str = _help(
        "auto: bf16 (else fp16) on a GPU, bf16 on a CPU with AMX or AVX512-BF16 instructions, "
        "fp32 on other CPUs; what was detected and chosen is saved in config.yaml.", "auto",
                           ("auto", "fp32", "fp16", "bf16"))
    class_weights: str = _help("none, auto (inverse frequency) or a JSON file of weights.", "none")
    lora_r: int = _help("LoRA rank.", 8)
    lora_alpha: int = _help("LoRA scaling numerator (scale = alpha / r).", 16)
    lora_dropout: float = _help("Dropout on the LoRA branch.", 0.05)
    lora_targets: str | None = _help(
        "Comma-separated module names, or all-linear; none: chosen per architecture."
    )
    merge_lora: bool = _help("Also save model/ with the adapter merged in (LoRA only).", True)
    report_to: tuple[str, ...] = _help(
        "Experiment trackers to log to, several allowed (tensorboard: event files in "
        "RUN_DIR/tensorboard; mlflow: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here); "
        "none: no tracking.", (), TRACKERS)
    checkpoint_every: str | None = _help(
        "Also checkpoint mid-epoch every N optimizer steps ('500') or N minutes ('10m'), so a "
        "crash loses at most that much and --resume continues mid-epoch; none: only after "
        "each epoch.", "10m")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **overrides: Any) -> RunConfig:
        """Return a copy with flat `field=value` overrides routed to their section."""
        return _apply(self, overrides)


@dataclass(frozen=True)
class TuneConfig:
    """`sentitune tune`: the search around a RunConfig (not part of any run)."""

    trials: int = _help("Trials in the study, those of an interrupted search included.", 20)
    timeout: float | None = _help(
        "Time budget in minutes: no trial starts after it; none: only --trials limits.")
    search: str | None = _help(
        "Parameters to search, comma-separated: NAME (its default range), NAME=LOW:HIGH or "
        "NAME=A|B|C; none: every default one of the method (learning_rate, epochs, "
        "batch_size, warmup_ratio, weight_decay, scheduler; lora_r, lora_alpha for LoRA); "
        "layer_decay (0.7:1) and optimizer only when named.")
    pruning: bool = _help("Stop a trial whose validation score at an epoch is below the "
                          "median of earlier trials at that epoch.", True)


@dataclass(frozen=True)
class DistillConfig:
    """`sentitune distill`: how teacher runs teach a student (saved in the student's run)."""

    student: str | None = _help(
        "The student: 'teacher' (the first teacher's fine-tuned model), an alias, hub id or "
        "local folder; NAME:N keeps N of its encoder layers, evenly spaced and ending with "
        "the last, initialised from those layers (teacher:3); none: teacher with half its "
        "layers.")
    unlabeled: str | None = _help(
        "Unlabeled texts the teachers label for the student: imdb (its 50,000 unsup "
        "reviews) or a CSV/TSV/JSON/JSONL/parquet/TXT file; none: only the labelled rows.")
    unlabeled_column: str | None = _help("Text column of --unlabeled; none: guessed.")
    unlabeled_unit: str = _help(
        "What one row of --unlabeled is: text (each text whole, cut at max length like any "
        "row) or sentence (each of its sentences, for a sentence-level task such as SST-2: a "
        "review then teaches with all its sentences, not only its first max-length tokens).",
        "text", UNLABELED_UNITS)
    unlabeled_samples: int | None = _help(
        "Seeded subset of the unlabeled rows (texts or sentences, see --unlabeled-unit); "
        "none: all.")
    temperature: float = _help(
        "Softmax temperature of the soft targets (Hinton et al. 2015): above 1 passes on "
        "how the teacher ranks the wrong classes too.", 2.0)
    alpha: float = _help(
        "Weight of the soft-target loss (KL to the teachers, scaled by T^2); the rest goes "
        "to cross-entropy on the hard labels, where a row has one.", 0.5)
    hidden_weight: float = _help(
        "Weight of the intermediate-layer loss (Patient KD, Sun et al. 2019): each student "
        "layer but the last learns the unit-length [CLS] state of the teacher layer it "
        "stands for (mean squared error per element; PKD used 100 to 500); 0: off. Needs "
        "one teacher and a student of its width.", 0.0)

    def __post_init__(self) -> None:
        _check_choices(self)


@dataclass(frozen=True)
class InferenceConfig:
    """How a trained run answers in `predict`, `evaluate`, `check` and `serve`.

    None means the run's own setting (config.yaml for the long-text ones, decision.json
    for the review ones); `Classifier` resolves it once, when it loads. A new answer setting
    (explanations, say) is a new field here: the verbs' flags follow from it.
    """

    backend: str = _help(
        "Inference engine: torch, torch-bf16 (bf16 autocast), adapter (a LoRA adapter on "
        "its base), onnx or onnx-int8 (after `sentitune export`).", "torch", BACKENDS)
    batch_size: int = _help("Texts per forward pass.", 64)
    long_text: str | None = _help(
        "Texts over max length: truncate (as the run was trained) or chunk (score every "
        "overlapping window, average their logits); none: the run's.", None, LONG_TEXT_MODES)
    stride: int | None = _help(
        "--long-text chunk: tokens neighbouring windows share; none: the run's, else a "
        "quarter of max length.")
    review_threshold: float | None = _help(
        "Flag answers whose score is below this for review; none: the run's (see evaluate "
        "--target-accuracy).")
    threshold: float | None = _help(
        "Multi-label runs: one decision threshold for every label instead of the per-label "
        "ones tuned on validation; none: the tuned ones.")
    review_truncated: bool | None = _help(
        "Send every text cut to max length to review; none: the run's decision (evaluate "
        "saves it in the run).")
    explain: str | None = _help(
        "Texts given directly: add word attributions for the predicted label by this "
        "method (gradient methods need a torch backend); none: no explanation.", None,
        EXPLAIN_METHODS)

    def __post_init__(self) -> None:
        _check_choices(self)
        if self.batch_size <= 0:
            raise SentituneError(f"--batch-size must be > 0, got {self.batch_size}")
        if self.stride is not None and self.stride < 0:
            raise SentituneError(f"--stride must be >= 0, got {self.stride}")
        if self.review_threshold is not None and not 0 <= self.review_threshold <= 1:
            raise SentituneError(f"--review-threshold must be between 0 and 1, got "
                                 f"{self.review_threshold}")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise SentituneError(f"--threshold must be between 0 and 1, got {self.threshold}")

    def replace(self, **settings: Any) -> InferenceConfig:
        """A copy with the settings given (None: keep this one's)."""
        given = {k: v for k, v in settings.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in fields(self)})
        if unknown:
            raise SentituneError(f"unknown inference setting {', '.join(unknown)}; the "
                                 f"settings are {', '.join(f.name for f in fields(self))}")
        return dataclasses.replace(self, **given)


def inference_config(config: InferenceConfig | None = None, **settings: Any) -> InferenceConfig:
    """`config` (default: every setting the run's own) with flat `setting=value` overrides,
    as `sentitune predict --setting value`."""
    return (config or InferenceConfig()).replace(**settings)


def _check_choices(section: Any) -> None:
    """Every enumerated setting of `section` is one of its choices (or None)."""
    for f in fields(section):
        choices = f.metadata.get("choices")
        value = getattr(section, f.name)
        for one in value if isinstance(value, tuple) else (value,):
            if choices and one is not None and one not in choices:
                raise SentituneError(f"{console.flag(f.name)} must be one of "
                                     f"{', '.join(choices)}, not '{one}'")


@dataclass(frozen=True)
class AuditConfig:
    """`sentitune audit`: which training labels look wrong (out-of-fold + cleanlab)."""

    dataset: str | None = _help(
        "Data to audit, as `train --data` takes it; none: the --run's own training rows.")
    run: str | None = _help("A run directory whose training rows (and base model) to audit.")
    text_column: str | None = _help("Column holding the text; none: guessed.")
    label_column: str | None = _help("Column holding the label; none: guessed.")
    task: str | None = _help("The task; none: inferred from the labels.", None, TASKS)
    model: str | None = _help(
        "Encoder: alias, hub id or local folder; none: the --run's base model, else minilm.")
    folds: int = _help("Cross-validation folds: every row is scored by a model that never "
                       "saw it.", 5)
    finetune: bool = _help(
        "Fine-tune the encoder in every fold (the training code, slower, sharper) instead "
        "of a linear model on frozen mean-pooled embeddings.", False)
    epochs: float = _help("--finetune: training epochs per fold.", 2.0)
    max_length: int = _help("Longest input in tokens.", 128)
    batch_size: int = _help("Texts per forward pass (and per training step).", 32)
    near_duplicate: float = _help(
        "Cosine similarity of embeddings from which two texts count as near duplicates.", 0.95)
    fix: str | None = _help(
        "Also write cleaned.csv that `train --data` reads: drop the suspected rows, or "
        "relabel them with the suggested label; none: report only.", None, ("drop", "relabel"))
    top: int = _help("Suspected issues shown in the summary.", 50)
    seed: int = _help("Seed of the folds and the linear model.", 42)


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig}


# Every setting's section, e.g. "learning_rate" -> "training"; setting names are unique.
FIELD_SECTION: dict[str, str] = {
    f.name: section for section, cls in SECTIONS.items() for f in fields(cls)
}


def section_of(name: str) -> str:
    if name not in FIELD_SECTION:
        raise SentituneError(f"unknown setting '{name}'; see `sentitune train --help` for the list")
    return FIELD_SECTION[name]


# Settings that may be None ("all rows", "guessed", "off"): None given for one of them
# clears a preset's value; for any other setting None means "not given".
OPTIONAL: frozenset[str] = frozenset(
    f.name for cls in SECTIONS.values() for f in fields(cls) if "None" in str(f.type)
)


def _apply(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    by_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in overrides.items():
        if value is not None or key in OPTIONAL:
            by_section[section_of(key)][key] = value
    return RunConfig(
        **{
            name: dataclasses.replace(getattr(config, name), **values)
            for name, values in by_section.items()
        }
    )


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_purpose(name: str) -> str:
    """A shipped preset's one-line purpose: the first line of its leading comment."""
    first = (PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8").split("\n", 1)[0]
    return first.removeprefix("#").strip() if first.startswith("#") else ""


def load_preset(name_or_path: str) -> RunConfig:
    """Read a preset by name (sentitune/presets/NAME.yaml) or a YAML file, e.g. a run's
    config.yaml."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise SentituneError(
            f"no preset or YAML file '{name_or_path}'; presets: {', '.join(available_presets())}"
        )
    return from_dict(read_yaml(path), str(path))


def distill_preset(name_or_path: str) -> dict[str, Any] | None:
    """A distill preset's settings (its `distill:` and `training:` sections, flat, only the
    keys it writes), or None when the preset has no `distill:` section. Its `data:` and
    `model:` sections say which teacher it is for; a student always reads its teacher's data
    and starts from its teacher's model."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    raw = read_yaml(path) if path.is_file() else {}
    if "distill" not in raw:
        return None
    taught, training = raw.get("distill") or {}, raw.get("training") or {}
    if not isinstance(taught, dict) or not isinstance(training, dict):
        raise SentituneError(f"{path}: sections 'distill' and 'training' must be mappings")
    names = {f.name for f in fields(DistillConfig)}
    for key in taught:
        if key not in names:
            raise SentituneError(f"{path}: '{key}' is not a distill setting; those are "
                                 f"{', '.join(sorted(names))}")
    for key in training:
        if section_of(key) != "training":
            raise SentituneError(f"{path}: '{key}' belongs in section '{section_of(key)}'")
    return taught | training


def read_yaml(path: Path) -> dict:
    """A YAML mapping from `path`; anything else is a SentituneError naming the file."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SentituneError(f"{path} is not UTF-8 text; restore or rewrite it") from None
    except yaml.YAMLError as exc:
        raise SentituneError(f"{path} is not valid YAML ({exc.__class__.__name__}); "
                             "restore or rewrite it") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SentituneError(f"{path} must hold a mapping of sections, not a "
                             f"{type(raw).__name__}; restore or rewrite it")
    return raw


def from_dict(raw: dict, source: str) -> RunConfig:
    """A RunConfig from its sections (`data:`, `model:`, `training:`); other keys are facts
    that a run directory saves beside the config and are ignored here."""
    flat: dict[str, Any] = {}
    for section in SECTIONS:
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            raise SentituneError(f"{source}: section '{section}' must be a mapping")
        for key, value in values.items():
            if section_of(key) != section:
                raise SentituneError(f"{source}: '{key}' belongs in section '{section_of(key)}'")
            flat[key] = value
    try:
        return validate(RunConfig().replace(**flat))
    except TypeError as exc:
        raise SentituneError(f"{source}: {exc}") from None


def validate(config: RunConfig) -> RunConfig:
    """Reject settings that cannot work, before any model or data is loaded."""
    d, t = config.data, config.training
    positive = {
        "max_length": d.max_length,
        "batch_size": t.batch_size,
        "eval_batch_size": t.eval_batch_size,
        "gradient_accumulation": t.gradient_accumulation,
        "lora_r": t.lora_r,
        "train_samples": d.train_samples,
        "val_samples": d.val_samples,
    }
    if d.stride is not None and d.stride < 0:
        raise SentituneError(f"--stride must be >= 0, got {d.stride}")
    for name, value in positive.items():
        if value is not None and value <= 0:
            raise SentituneError(f"{console.flag(name)} must be > 0, got {value}")
    if (t.learning_rate is not None and t.learning_rate <= 0) or t.epochs <= 0:
        raise SentituneError("--learning-rate and --epochs must be > 0")
    if not 0 < d.val_fraction < 1:
        raise SentituneError(f"--val-fraction must be between 0 and 1, got {d.val_fraction}")
    if not 0 <= t.warmup_ratio < 1:
        raise SentituneError(f"--warmup-ratio must be in [0, 1), got {t.warmup_ratio}")
    # Checked here, not by argparse: an unknown name is one error line, not a usage dump.
    if t.optimizer not in OPTIMIZERS:
        raise SentituneError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"not '{t.optimizer}'")
    if not 0 < t.layer_decay <= 1:
        raise SentituneError(f"--layer-decay must be in (0, 1] (1: off), got {t.layer_decay}")
    if t.augment < 0:
        raise SentituneError(f"--augment must be >= 0 (0: off), got {t.augment}")
    config = config.replace(report_to=trackers(t.report_to),
                            augment_methods=augment_methods(t.augment_methods))
    config = config.replace(extra_data=tuple(
        source for source in ([d.extra_data] if isinstance(d.extra_data, str)
                              else d.extra_data or ()) if source != "none"))
    checkpoint_interval(t.checkpoint_every)
    _check_choices(d)
    _check_choices(config.training)
    return config


def trackers(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """`--report-to` as a tuple of tracker names: a YAML list or comma-separated names;
    none (alone) means no tracker."""
    names = [value] if isinstance(value, str) or value is None else list(value)
    found = [part.strip() for name in names for part in str(name or "none").split(",")]
    if "none" in found and len(found) > 1:
        raise SentituneError(f"--report-to none cannot be combined with {', '.join(found)}; "
                             "give none alone or only trackers")
    return tuple(dict.fromkeys(name for name in found if name and name != "none"))


def augment_methods(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    """`--augment-methods` as a tuple of names (a YAML list or comma-separated names), or
    None (each verb's default)."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    found = [part.strip() for name in names for part in str(name).split(",") if part.strip()]
    return None if found in ([], ["none"]) else tuple(dict.fromkeys(found))


def checkpoint_interval(setting: str | None) -> tuple[int | None, float | None]:
    """`checkpoint_every` as (steps, seconds), at most one of them set."""
    if setting is None:
        return None, None
    text = str(setting).strip().lower()
    number = text.removesuffix("m")
    if not number.isdigit() or int(number) <= 0:
        raise SentituneError(f"--checkpoint-every must be a number of steps (500) or minutes "
                             f"(10m), or none; got '{setting}'")
    return (None, int(number) * 60.0) if text.endswith("m") else (int(number), None)


def resolved(config: RunConfig) -> RunConfig:
    """`config` with its method-dependent defaults filled in, as a run saves it."""
    if config.training.learning_rate is not None:
        return config
    if config.training.optimizer == "sgd":
        return config.replace(learning_rate=SGD_LEARNING_RATE)
    return config.replace(learning_rate=DEFAULT_LEARNING_RATES[config.training.method])


def plain(value: Any) -> Any:
    """`value` as its YAML file holds it: a JSON round trip turns tuples into lists and numpy
    scalars and other strays into plain types."""
    import json

    return json.loads(json.dumps(value, default=str))


def config_yaml(config: RunConfig, facts: dict[str, Any] | None = None) -> str:
    """The resolved config (plus facts such as the data fingerprint) as YAML text."""
    return yaml.safe_dump(plain(config.to_dict() | (facts or {})), sort_keys=False)


def make_config(config: RunConfig | str | Path | None = None, **settings: Any) -> RunConfig:
    """A validated RunConfig from a RunConfig, a preset name or YAML file (or the defaults),
    with flat `setting=value` overrides, as `sentitune train --config X --setting value`."""
    if config is None:
        base = RunConfig()
    elif isinstance(config, RunConfig):
        base = config
    else:
        if distill_preset(str(config)) is not None:
            raise SentituneError(f"{config} is a distill preset: its student learns from a "
                                 f"teacher run; use sentitune distill TEACHER_RUN --config "
                                 f"{config}")
        base = load_preset(str(config))
    return validate(base.replace(**settings))


def presets() -> list[str]:
    """The names of the presets shipped with sentitune (`--config NAME`); a SentituneError
    naming the folder when this install has none (an incomplete install, e.g. one built from
    a stale build/ folder)."""
    found = available_presets()
    if not found:
        state = "is empty" if PRESETS_DIR.is_dir() else "is missing"
        raise SentituneError(
            f"no presets: {PRESETS_DIR} {state}, so this install of sentitune is incomplete; "
            "reinstall it (from a source tree: delete its build/ folder first)")
    return found
