"""Distillation: fine-tuned runs teach a smaller, faster student (`sentitune distill`).

The teachers (one run, or several answering as an ensemble) label every training text and
any unlabeled texts with soft probabilities; the student learns them (Hinton et al. 2015):

    loss = alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, label)

where p^T is the softmax at temperature T (multi-label: the sigmoid, with binary
cross-entropy in place of KL) and CE counts only rows with a label; `--hidden-weight`
adds Patient KD's layer-matching term (`layer_matching`). Validation, the best
epoch, calibration and every file of the run are those of `sentitune train`: the student
is an ordinary run directory, whose config.yaml and card name its teachers.

The soft targets are computed by each teacher on its own tokenization of a text (its own
tokenizer, max length and truncation); the student reads the same cleaned text with its
own tokenizer. A student with another vocabulary is allowed, and warned about: the two
then see different tokens of a long text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentitune import console
from sentitune.config import DistillConfig
from sentitune.dataset.sources import BUILTINS, TEXT_COLUMNS, data_dir, read_table
from sentitune.dataset.splits import Splits, clean_text, sentences
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier
from sentitune.layer_matching import LayerMatching, check_matching
from sentitune.metrics import probabilities
from sentitune.run import Run, refuse_other_settings

# Built-in datasets whose unlabeled texts `--unlabeled NAME` means: local file, hub split.
UNLABELED_BUILTINS = {"imdb": ("imdb/unsup.csv.gz", "unsupervised")}
TEACHER = "teacher"


def parse_student(spec: str | None, teacher: Run) -> tuple[str, int | None]:
    """`--student` as (model to load, layers to keep or None).

    'teacher' is the first teacher's fine-tuned model/; NAME:N keeps N layers, NAME:half
    half of them (rounded up); none means teacher:half.
    """
    from sentitune.model import layer_count

    name, layers = spec or f"{TEACHER}:half", None
    head, sep, tail = name.rpartition(":")
    if sep and (tail.isdigit() or tail == "half"):
        name, layers = head, -1 if tail == "half" else int(tail)  # -1: once the depth is known
    if name == TEACHER:
        if not teacher.model_dir.is_dir():
            raise SentituneError(f"teacher {teacher.path} has no model/ (an unmerged LoRA run); "
                                 "give --student NAME[:LAYERS] with a model to start from")
        name = str(teacher.model_dir)
    if layers == -1:
        from transformers import AutoConfig

        from sentitune.model import resolve_model

        layers = max(1, (layer_count(AutoConfig.from_pretrained(resolve_model(name))) + 1) // 2)
    if layers is not None and layers < 1:
        raise SentituneError(f"--student {spec}: keep at least one layer")
    return name, layers


def read_unlabeled(source: str, column: str | None, samples: int | None, seed: int,
                   unit: str = "text") -> tuple[list[str], str]:
    """Unlabeled rows: a built-in's (IMDb's unsup reviews) or a file's text column, whole or
    (`unit` sentence) cut into sentences, with a seeded subset of `samples` rows. Returns
    the raw rows and the column read."""
    if source in UNLABELED_BUILTINS:
        local, hub_split = UNLABELED_BUILTINS[source]
        root = data_dir()
        if root is not None and (root / local).exists():
            frame = read_table(root / local)
        else:
            frame = _unlabeled_from_hub(source, hub_split)
    elif source in BUILTINS:
        raise SentituneError(f"{source} has no unlabeled texts; --unlabeled takes "
                             f"{', '.join(UNLABELED_BUILTINS)} or a file")
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise SentituneError(f"--unlabeled {source}: no such file; give a CSV/TSV/JSONL/"
                                 f"parquet/TXT file or {', '.join(UNLABELED_BUILTINS)}")
        frame = read_table(path)
    columns = [str(c) for c in frame.columns]
    if column is None:
        lowered = {c.lower(): c for c in columns}
        column = next((lowered[c] for c in TEXT_COLUMNS if c in lowered), None)
        if column is None:
            raise SentituneError(f"--unlabeled {source} has no text column (columns: "
                                 f"{', '.join(columns)}); name it with --unlabeled-column")
    elif column not in columns:
        raise SentituneError(f"--unlabeled {source} has no column '{column}' (columns: "
                             f"{', '.join(columns)})")
    texts = [t for t in frame[column] if isinstance(t, str) and t.strip()]
    if unit == "sentence":
        texts = [piece for text in texts for piece in sentences(text)]
    if not texts:
        raise SentituneError(f"--unlabeled {source}: column '{column}' holds no texts")
    if samples is not None and samples < len(texts):
        picked = np.random.default_rng(seed).choice(len(texts), samples, replace=False)
        texts = [texts[i] for i in np.sort(picked)]
    return texts, column


def _unlabeled_from_hub(name: str, hub_split: str) -> pd.DataFrame:
    import datasets

    spec = BUILTINS[name]
    try:
        return datasets.load_dataset(spec.hub_id, spec.hub_config, split=hub_split).to_pandas()
    except Exception as exc:  # the hub raises many types when offline
        raise SentituneError(f"the unlabeled texts of {name} are not available locally and "
                             f"could not be loaded from the Hugging Face Hub "
                             f"({exc.__class__.__name__}); set SENTITUNE_DATA_DIR or pass a "
                             "file") from None


class Teaching:
    """What `sentitune.training.train` needs to train a student: the model surgery, the
    training set with soft targets, and the loss (the three hooks training calls)."""

    def __init__(self, teacher: Classifier, settings: DistillConfig, unlabeled: list[str],
                 layers: int | None, batch_size: int, clean_html: bool,
                 progress: bool = False, matching: LayerMatching | None = None) -> None:
        self.teacher = teacher
        self.matching = matching  # --hidden-weight
        self.progress = progress
        self.clean_html = clean_html
        self.settings = settings
        self.unlabeled = unlabeled
        self.layers = layers
        self.batch_size = batch_size
        self.facts: dict[str, Any] = {}

    # ------------------------------------------------------------- hooks

    def prepare_model(self, model, tokenizer):
        """Keep the student's layers (hooking the matched ones, see `layer_matching`); warn
        when its tokenizer is not the teachers'."""
        from sentitune.model import keep_layers, layer_count, layer_stack

        kept = None
        if self.layers is not None and self.layers != layer_count(model.config):
            kept = keep_layers(model, self.layers)
        if self.matching is not None:
            _, stack = layer_stack(model, "--hidden-weight cannot match the layers of",
                                   "give a BERT-like student or --hidden-weight 0")
            self.matching.watch(stack)
        same = self.teacher.encoder.vocabulary() == tokenizer.get_vocab()
        if not same:
            console.warn("the student's tokenizer differs from the teachers': soft targets "
                         "are computed on each teacher's own tokenization of a text (max "
                         f"length {self.teacher.max_length}, truncation "
                         f"{self.teacher.encoder.truncation}) and the student learns them "
                         "from its own tokens of the same text")
        self.facts.update(kept_layers=kept, same_tokenizer=same)
        return model

    def train_set(self, train_set, splits: Splits, tokenize_texts,
                  augmented: Sequence[str] = ()):
        """The labelled rows plus the new unlabeled ones and the augmented copies of the
        training texts (`--augment`), each with its soft targets packed into `labels` (see
        `distillation_loss`); `tokenize_texts` tokenizes like training."""
        import datasets

        seen = set(splits.train["text"]) | set(splits.validation["text"])
        unlabeled = list(dict.fromkeys(t for t in (clean_text(u, self.clean_html)
                                                    for u in self.unlabeled)
                                       if t and t not in seen))
        # Copies come after the unlabeled texts: neither has a hard label, the teachers
        # label both (the transfer set of Tang et al. 2019).
        taken = seen | set(unlabeled)
        copies = [t for t in dict.fromkeys(augmented) if t not in taken]
        extra = unlabeled + copies
        texts = list(splits.train["text"]) + extra
        soft = self.soft_targets(texts)
        hard = np.asarray(train_set["labels"])
        n_labels = len(splits.labels)
        if splits.task == "multilabel":
            has = np.r_[np.ones(len(hard)), np.zeros(len(extra))][:, None]
            hard = np.vstack([hard, np.zeros((len(extra), n_labels))])
            packed = np.hstack([has, hard, soft])
        else:
            hard = np.r_[hard, np.full(len(extra), -1)][:, None]
            packed = np.hstack([hard, soft])
        if self.matching is not None:  # the row's index into the teacher's states, last
            self.matching.compute_targets(texts, self.batch_size, self.progress)
            packed = np.hstack([packed, np.arange(len(texts))[:, None]])
        rows = train_set.remove_columns("labels")
        if extra:
            added = tokenize_texts(extra)
            rows = datasets.concatenate_datasets([rows, added.select_columns(rows.column_names)])
        self.facts.update(labelled_rows=len(train_set), unlabeled_rows=len(unlabeled),
                          augmented_rows=len(copies),
                          unlabeled_dropped=len(self.unlabeled) - len(unlabeled))
        return rows.add_column("labels", packed.astype(np.float32).tolist())

    def loss(self, task: str, weights: np.ndarray | None):
        return distillation_loss(task, self.settings.temperature, self.settings.alpha, weights,
                                 self.matching)

    # ------------------------------------------------------------- teachers

    def soft_targets(self, texts: Sequence[str]) -> np.ndarray:
        """The teachers' probabilities at the distillation temperature; with `progress`, a
        line per tenth of the texts (the teachers may take minutes before training starts)."""
        started = time.perf_counter()
        step = max(len(texts) // 10, 1000)
        console.say(self.progress, f"the teachers label {len(texts):,} texts for the student "
                                   "(soft targets) ...")
        parts = []
        for start in range(0, len(texts), step):
            parts.append(self.teacher.logits(texts[start:start + step], self.batch_size)[0])
            if start + step < len(texts):
                console.say(self.progress, f"  {start + step:,} of {len(texts):,} texts "
                                           f"({time.perf_counter() - started:.0f} s)")
        logits = np.concatenate(parts) if parts else np.zeros((0, len(self.teacher.labels)))
        task = self.teacher.task
        return probabilities(logits.astype(np.float64) / self.settings.temperature, task)

    def record(self) -> dict[str, Any]:
        """What the student's config.yaml and card say about how it was taught."""
        return {"teachers": [str(m.run.path) for m in self.teacher.members],
                **asdict(self.settings),
                "layers": self.layers, **self.facts,
                **(self.matching.record() if self.matching is not None else {}),
                "soft_targets": "each teacher's own tokenization (max length "
                                f"{self.teacher.max_length}, truncation "
                                f"{self.teacher.encoder.truncation}); ensembles average "
                                "probabilities"}


def distillation_loss(task: str, temperature: float, alpha: float,
                      weights: np.ndarray | None = None,
                      matching: LayerMatching | None = None):
    """The Trainer's loss for packed labels (the formula in the module docstring).

    Training rows carry `labels` = [hard label id or -1, soft targets...] (multi-label:
    [has label, multi-hot..., soft targets...]), then with `matching` the row's index into
    the teacher's layer states, whose loss is added; validation rows carry ordinary labels
    and get the ordinary loss, so validation loss means what it means for `train`.
    """
    import torch
    import torch.nn.functional as F

    t = float(temperature)

    def loss(outputs, labels, num_items_in_batch=None):
        n = outputs["logits"].shape[-1]
        validation = labels.ndim == 1 or (task == "multilabel" and labels.shape[-1] == n)
        if matching is None or validation:
            return soft_and_hard(outputs, labels)
        return soft_and_hard(outputs, labels[:, :-1]) + matching.loss(labels[:, -1].long())

    def soft_and_hard(outputs, labels):
        logits = outputs["logits"].float()
        n = logits.shape[-1]
        w = None if weights is None else torch.tensor(weights, dtype=logits.dtype,
                                                      device=logits.device)
        if task == "multilabel":
            if labels.shape[-1] == n:  # validation
                return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=w)
            has, hard, soft = labels[:, 0] > 0, labels[:, 1:n + 1], labels[:, n + 1:]
            kd = F.binary_cross_entropy_with_logits(logits / t, soft) * t * t
            ce = (F.binary_cross_entropy_with_logits(logits[has], hard[has], pos_weight=w)
                  if has.any() else logits.sum() * 0)
            return alpha * kd + (1 - alpha) * ce
        if labels.ndim == 1:  # validation
            return F.cross_entropy(logits, labels.long(), weight=w)
        hard, soft = labels[:, 0].long(), labels[:, 1:]
        kd = F.kl_div(F.log_softmax(logits / t, dim=-1), soft, reduction="batchmean") * t * t
        has = hard >= 0
        ce = (F.cross_entropy(logits[has], hard[has], weight=w) if has.any()
              else logits.sum() * 0)
        return alpha * kd + (1 - alpha) * ce

    return loss


def _validate(settings: DistillConfig) -> None:
    if settings.temperature <= 0:
        raise SentituneError(f"--temperature must be > 0, got {settings.temperature}")
    if not 0 <= settings.alpha <= 1:
        raise SentituneError(f"--alpha must be in [0, 1], got {settings.alpha}")
    if settings.hidden_weight < 0:
        raise SentituneError(f"--hidden-weight must be >= 0 (0: off), got "
                             f"{settings.hidden_weight}")
    if settings.unlabeled_samples is not None and settings.unlabeled_samples <= 0:
        raise SentituneError(f"--unlabeled-samples must be > 0, got "
                             f"{settings.unlabeled_samples}")
    if settings.unlabeled is None:
        given = [f"{console.flag(f.name)} {getattr(settings, f.name)}"
                 for f in fields(DistillConfig) if f.name.startswith("unlabeled_")
                 and getattr(settings, f.name) != f.default]
        if given:
            raise SentituneError(f"{', '.join(given)} without --unlabeled: give the unlabeled "
                                 "texts (--unlabeled FILE or imdb) or drop them")


def distill(teachers: str | Path | Sequence[str | Path], output: str | Path | None = None, *,
            config: str | Path | None = None, resume: bool = False, overwrite: bool = False,
            progress: bool = True, **settings: Any):
    """Train a student run at `output` on the soft targets of `teachers` (one run or an
    ensemble). `settings` are DistillConfig fields (student, unlabeled, temperature, ...)
    and any `sentitune train` setting, which overrides the first teacher's config (the
    student starts from it: same data, splits and max length; method full). `config` is a
    distill preset (sst2-minilm-student3) or YAML file whose settings `settings` override."""
    from sentitune.config import distill_preset
    from sentitune.training import train

    preset_name = None if config is None else str(config)
    if config is not None:
        preset = distill_preset(str(config))
        if preset is None:
            raise SentituneError(f"{config} is not a distill preset (it has no 'distill:' "
                                 "section); give one such as sst2-minilm-student3, or settings "
                                 "as flags")
        settings = preset | settings
    names = {f.name for f in fields(DistillConfig)}
    distill_settings = DistillConfig(**{k: v for k, v in settings.items() if k in names})
    overrides = {k: v for k, v in settings.items() if k not in names}
    _validate(distill_settings)
    # Refuses members with other labels, before any work.
    teacher = Classifier.from_pretrained(teachers)
    first = teacher.run
    model, layers = parse_student(distill_settings.student, first)
    matching = (LayerMatching(teacher.members[0], check_matching(teacher, model, layers),
                              distill_settings.hidden_weight)
                if distill_settings.hidden_weight else None)
    unlabeled: list[str] = []
    config = first.config.replace(model=model, method="full", **overrides)
    _warn_of_another_hold_out(first, config.training.seed)
    if distill_settings.unlabeled is not None:
        unlabeled, column = read_unlabeled(distill_settings.unlabeled,
                                           distill_settings.unlabeled_column,
                                           distill_settings.unlabeled_samples,
                                           config.training.seed,
                                           distill_settings.unlabeled_unit)
        distill_settings = replace(distill_settings, unlabeled_column=column)
    teaching = Teaching(teacher, distill_settings, unlabeled, layers,
                        config.training.eval_batch_size, config.data.clean_html, progress,
                        matching)
    if output is None:
        output = first.path.parent / f"{first.path.name}-student"
    if resume:
        _check_resume(output, distill_settings)
    return train(config, output, resume=resume, overwrite=overwrite, progress=progress,
                 teaching=teaching, callbacks=[_resume_command(
                     _resume_line(teacher, preset_name, distill_settings, output))])


def _warn_of_another_hold_out(teacher: Run, seed: int) -> None:
    """A hold-out is drawn with the run's seed: a student at another seed validates on other
    rows, some of which its teacher trained on, so its scores flatter it."""
    taught = teacher.config.training.seed
    if seed != taught and teacher.data_notes.get("validation_from"):
        console.warn(f"the student holds out other validation rows than its teacher (seed "
                     f"{seed}, the teacher's {taught}); the teacher trained on some of them, so "
                     f"the student's validation scores flatter it; give "
                     f"{console.option('seed', taught)}, or compare both on the test split "
                     "(sentitune evaluate RUN --split test)")


def _resume_line(teacher: Classifier, preset: str | None, settings: DistillConfig,
                 output: str | Path) -> str:
    """The command that resumes this student as it began: teachers, preset, the distill
    settings off their defaults (train settings given as flags are not repeated:
    `check_resume` names any that differ)."""
    import shlex

    words = ["sentitune", "distill", *(str(m.run.path) for m in teacher.members),
             *(["--config", preset] if preset else [])]
    default = DistillConfig()
    for f in fields(DistillConfig):
        if getattr(settings, f.name) != getattr(default, f.name):
            words += [console.flag(f.name), str(getattr(settings, f.name))]
    return shlex.join([*words, "--resume", "--output", str(output)])


def _check_resume(output: str | Path, settings: DistillConfig) -> None:
    """Refuse to resume a student with other distill settings than it began with: its
    config.yaml would describe a teaching its weights never had (`check_resume` does this
    for the train settings)."""
    staging = Run.staging_path(output)
    if (staging / "config.yaml").is_file():
        refuse_other_settings(staging, Run(staging).facts.get("distillation") or {},
                              asdict(settings), "distill settings", "distill")


def _resume_command(command: str):
    """A callback that leaves `command` in the checkpoint folder: an unfinished student is
    resumed with `sentitune distill`, not `train` (`Run.open` tells the user)."""
    from transformers import TrainerCallback

    from sentitune import files
    from sentitune.run import RESUME_COMMAND

    class ResumeCommand(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                Path(args.output_dir).mkdir(parents=True, exist_ok=True)
                files.write_text(Path(args.output_dir) / RESUME_COMMAND, command + "\n")

    return ResumeCommand()
