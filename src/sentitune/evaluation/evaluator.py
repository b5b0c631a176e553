"""Evaluation: score a trained run on any labelled split and show where it goes wrong.

`evaluate` writes into its output folder (default RUN_DIR/eval-DATA-SPLIT):

- ``metrics.json``: ``run``, ``data`` and ``split`` (which rows: `evaluation_rows`),
  the headline metrics (same key names as training's validation
  metrics) plus ``slices`` (count, accuracy, macro-F1, errors per slice),
  ``calibration`` (15-bin ECE before and after the run's temperature), ``review`` (the
  review threshold and what it accepts), ``behavioral`` (the behavioural tests, or why
  they were skipped) and, for binary runs, ``false_positives``/``false_negatives``
  (the second label is positive, as for F1).
- ``errors.jsonl``: the most confident mistakes and the most uncertain correct answers,
  as predictions (`sentitune.schema`) with ``true_label(s)``, ``correct`` and ``slices``.
- ``confusion_matrix.json``, ``report.md``, a self-contained ``report.html`` and every
  figure as a PNG.

Review threshold. With `target_accuracy`, the lowest confidence threshold whose accepted
answers reach that accuracy on the run's own validation split (rebuilt from config.yaml,
checked against the data fingerprint) becomes the run's default in decision.json, which
predict and serve use. ``review`` reports coverage and accuracy of the threshold in force
on the evaluated split, and with a target also on that validation split (``validation_*``
keys; ``reached`` says whether the target was met there). Confidence is the prediction's
`score`; the rules live in `sentitune.decision`.

Multi-label calibration is the ECE of every (example, label) probability taken as a
binary prediction; multi-label runs fit no temperature, so both ECE values are equal.

`check` runs only the behavioural tests (binary runs with negative/positive labels).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentitune import console, files, schema
from sentitune.calibration import expected_calibration_error, reliability_bins
from sentitune.config import InferenceConfig, inference_config
from sentitune.dataset.sources import available_splits
from sentitune.dataset.splits import load_eval_split
from sentitune.decision import (
    Decision,
    accept_cut,
    coverage_accuracy_curve,
    review_stats,
    threshold_for_target,
)
from sentitune.errors import SentituneError
from sentitune.evaluation.behavioral import positive_index, run_behavioral_tests
from sentitune.evaluation.report import (
    MAX_ERRORS,
    MAX_TEXT_CHARS,
    plot_coverage_accuracy,
    plot_error_lengths,
    plot_reliability,
    plot_slice_accuracy,
    write_report,
)
from sentitune.evaluation.slices import Slice, assign_slices, slice_metrics, text_slices
from sentitune.inference.classifier import Classifier
from sentitune.inference.ensemble import open_runs
from sentitune.metrics import classification_metrics, multi_hot, probabilities
from sentitune.plots import plot_confusion
from sentitune.run import Run

ECE_BINS = 15
ERRORS_PER_KIND = 50  # confident mistakes, and uncertain correct answers, in errors.jsonl
QUEUE_SUFFIXES = (".jsonl", ".csv")


@dataclass(frozen=True)
class EvalResult:
    output: Path
    metrics: dict
    review_queue: Path | None = None


@dataclass(frozen=True)
class CheckResult:
    output: Path
    results: dict
    failed: list[str]  # tests whose failure rate is above max_failure_rate


@dataclass(frozen=True)
class _Scores:
    """A run's answers on one labelled set, with the probabilities the saved model gives."""

    probs: np.ndarray  # calibrated: the temperature is folded into the saved head
    y_true: np.ndarray  # class ids, or multi-hot rows for multi-label
    y_pred: np.ndarray
    confidence: np.ndarray  # the prediction's `score` (sentitune.schema)
    correct: np.ndarray
    truncated: list[bool]
    review: np.ndarray  # what review is judged on: `confidence`, or -inf where truncated
    windows: np.ndarray  # windows scored per text (more than 1 only with long_text chunk)



def parse_slice(spec: str) -> Slice:
    """A `--slice NAME=REGEX` option as a Slice."""
    name, sep, pattern = spec.partition("=")
    if not sep or not name.strip() or not pattern:
        raise SentituneError(
            f"--slice expects NAME=REGEX, got {spec!r}; e.g. --slice 'plot=\\bplot\\b'")
    return Slice(name.strip(), f"matches the regex {pattern}", pattern)


def evaluate(
    run_dir: str | Path | Sequence[str | Path],
    data: str | None = None,
    *,
    split: str | None = None,
    output: str | Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    classifier: Classifier | None = None,
    slices: Sequence[Slice | str] = (),
    target_accuracy: float | None = None,
    review_queue: str | Path | None = None,
    behavioral: bool | None = None,
    config: InferenceConfig | None = None,
    **settings: Any,
) -> EvalResult:
    """Evaluate a run on `data` (default: its own dataset; see `evaluation_rows`).

    `slices` add user slices (`Slice` objects or `NAME=REGEX` strings); `target_accuracy`
    picks and saves the review threshold (see the module docstring); `review_queue` (.jsonl
    or .csv) receives every example of the evaluated split below the threshold, most
    uncertain first; `behavioral` runs the behavioural tests (None: on binary runs with
    negative/positive labels). `config` and the flat `settings` are InferenceConfig fields
    (batch_size, backend, long_text, stride, review_truncated); a `review_truncated` given
    is saved in the run's decision. Several run directories are evaluated as one ensemble.
    """
    config = inference_config(config or (classifier.config if classifier else None),
                              **settings)
    members = [m.run for m in classifier.members] if classifier else open_runs(run_dir)
    run = members[0]
    extra_slices = _check_options(members, config, slices, target_accuracy, review_queue,
                                  behavioral)
    skipped = None if behavioral else _why_no_behavioral(run.task, run.labels, behavioral)

    frame, data, split = evaluation_rows(run, data, split, text_column, label_column)
    validation = (run.rebuilt_splits().validation if target_accuracy is not None else None)
    if len(members) > 1 and split == "validation":
        _warn_unshared_validation(members)
    classifier = classifier or Classifier.from_pretrained(members, config)
    decision = classifier.decision_for(config)
    texts = list(frame["text"])
    scores, raw_logits = _score(classifier, texts, list(frame["label"]), config.batch_size,
                                decision)
    found, slice_lists, lengths, bins = _measure(classifier, texts, scores, raw_logits,
                                                 extra_slices)
    threshold, review = _choose_threshold(classifier, scores, texts, validation,
                                          target_accuracy, config.batch_size, decision)
    accepted = scores.review >= accept_cut(threshold, run.task)
    found["review"] = {"threshold": threshold, "review_truncated": decision.review_truncated,
                       **review_stats(scores.review, scores.correct, threshold, run.task),
                       "queued": int((~accepted).sum()), **review}
    found["behavioral"] = ({"skipped": skipped} if skipped is not None else
                           run_behavioral_tests(lambda batch: classifier.predict_proba(
                               batch, config.batch_size), run.labels))

    def record(i: int) -> dict:
        return _record(texts[i], i, scores, run.labels, run.task, threshold, slice_lists[i])

    out_dir = _output_dir(output, members, classifier, data, split)
    summary = {"run": str(run.path) if len(members) == 1 else [str(m.path) for m in members],
               "data": data, "split": split}
    queue_path = _write_results(out_dir, run, classifier, summary | found, scores, bins,
                                lengths, record, review_queue, accepted, config.batch_size)
    changes = {"review_threshold": threshold} if target_accuracy is not None else {}
    if decision.review_truncated != run.decision.review_truncated:
        changes["review_truncated"] = decision.review_truncated
    if changes and len(members) == 1:  # an ensemble's decision is its members' own
        run.update_decision(**changes)
    return EvalResult(out_dir, summary | found, queue_path)


def _check_options(members: list[Run], config: InferenceConfig, slices: Sequence[Slice | str],
                   target_accuracy: float | None, review_queue: str | Path | None,
                   behavioral: bool | None) -> list[Slice]:
    """Every option checked before data or model load, so a typo costs nothing; the user
    slices parsed."""
    extra_slices = [parse_slice(s) if isinstance(s, str) else s for s in slices]
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise SentituneError(f"--target-accuracy must be in (0, 1], got {target_accuracy}")
    if review_queue is not None and Path(review_queue).suffix.lower() not in QUEUE_SUFFIXES:
        raise SentituneError(
            f"--review-queue must end in .jsonl or .csv, not '{Path(review_queue).name}'")
    text_slices(extra_slices)  # bad names or regexes fail here
    if len(members) > 1 and (target_accuracy is not None
                             or config.review_truncated is not None):
        raise SentituneError("--target-accuracy and --review-truncated save a decision in a "
                             "run; an ensemble has none of its own: give --review-threshold "
                             "and --review-truncated to predict or serve instead")
    if behavioral:
        _require_behavioral(members[0], "--behavioral")
    return extra_slices


def _measure(classifier: Classifier, texts: list[str], scores: _Scores,
             raw_logits: np.ndarray, extra_slices: list[Slice]
             ) -> tuple[dict, list[list[str]], list[int], list[dict]]:
    """The headline metrics, slices, calibration and long-text facts of `scores`; also each
    text's slices, its length in tokens and the reliability bins."""
    task, labels = classifier.task, classifier.labels
    thresholds = classifier.decision.label_thresholds
    found = classification_metrics(scores.y_true, scores.probs, task, labels,
                                   None if thresholds is None else np.asarray(thresholds))
    if task == "binary":  # rows are the true class, columns the predicted one
        found["false_positives"] = found["confusion_matrix"][0][1]
        found["false_negatives"] = found["confusion_matrix"][1][0]
    lengths = classifier.encoder.token_lengths(classifier.run.preprocess(texts))
    slice_lists = assign_slices(
        texts, lengths, classifier.max_length,
        None if task == "multilabel" else list(scores.y_true), labels, extra_slices)
    found["slices"] = slice_metrics(slice_lists, scores.y_true, scores.y_pred, labels)
    found["calibration"], bins = _calibration(scores, raw_logits, task,
                                              classifier.decision.temperature)
    found["long_text"] = {"truncation": classifier.encoder.truncation,
                          "mode": classifier.long_text, "stride": classifier.stride,
                          "texts_over_max_length": int(sum(n > classifier.max_length
                                                           for n in lengths)),
                          "windows": int(scores.windows.sum())}
    return found, slice_lists, lengths, bins


def _output_dir(output: str | Path | None, members: list[Run], classifier: Classifier,
                data: str, split: str) -> Path:
    """OUTPUT, else RUN_DIR/eval-DATA-SPLIT (a whole plain file: eval-DATA; an ensemble's
    beside its first member)."""
    name = f"eval-{Path(data).stem.replace('.', '-')}" + ("" if split == WHOLE_FILE
                                                          else f"-{split}")
    if output:
        return Path(output)
    if len(members) > 1:  # not inside one member: it is none of theirs
        return members[0].path.parent / f"ensemble-{classifier.name}" / name
    return members[0].path / name


def _write_results(out_dir: Path, run: Run, classifier: Classifier, found: dict,
                   scores: _Scores, bins: list[dict], lengths: list[int],
                   record: Callable[[int], dict], review_queue: str | Path | None,
                   accepted: np.ndarray, batch_size: int) -> Path | None:
    """metrics.json, errors.jsonl, the figures and the report (and the review queue, when
    asked for: its path)."""
    mistakes = [{"kind": "confident_mistake", **record(i)} for i in
                _by_confidence(scores, ~scores.correct, descending=True)[:ERRORS_PER_KIND]]
    uncertain = [{"kind": "uncertain_correct", **record(i)}
                 for i in _by_confidence(scores, scores.correct)[:ERRORS_PER_KIND]]

    queue_head = [record(i) for i in _by_confidence(scores, ~accepted)[:MAX_ERRORS]]
    _attach_explanations(classifier, mistakes[:MAX_ERRORS] + queue_head, batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _figures(run, out_dir, found, classifier.labels, scores, bins, lengths)
    files.write_jsonl(out_dir / "errors.jsonl", mistakes + uncertain)
    queue_path = None
    if review_queue is not None:
        queue_path = Path(review_queue)
        _write_records(queue_path, [record(i) for i in _by_confidence(scores, ~accepted)],
                       columns=list(schema.flat_row(record(0))))
    files.write_json(out_dir / "metrics.json", found)
    shown = (run.path.name if len(classifier.members) == 1
             else f"ensemble {classifier.name}")
    write_report(out_dir, found, figures, f"{shown} on {found['data']} ({found['split']})",
                 _report_summary(run, found), mistakes, queue_head)
    return queue_path


def _attach_explanations(classifier: Classifier, records: list[dict], batch_size: int) -> None:
    """Word attributions (leave-one-word-out occlusion: any backend, an ensemble too) for
    the label each record predicted, under its `explanation`, for the report to highlight;
    only the words of the part of each text the report shows."""
    from sentitune.inference.explanations import BULK_METHOD, explain

    if not records:
        return
    found = explain(classifier, [r["text"] for r in records], BULK_METHOD,
                    batch_size=batch_size, within_chars=MAX_TEXT_CHARS)
    for record, explanation in zip(records, found, strict=True):
        record["explanation"] = {k: explanation[k] for k in ("label", "method", "words")}


def _warn_unshared_validation(members: list[Run]) -> None:
    """The first member's validation rows may be another member's training rows."""
    prints = {m.facts.get("data_fingerprint") for m in members}
    if len(prints) > 1:
        console.warn("the ensemble's members were trained on different rows, so the first "
                     "member's validation rows may be training rows of another: evaluate on a "
                     f"test split or a file none of them saw ({console.option('data')}, "
                     f"{console.option('split', 'test')})")


# The `split` of a plain file evaluated whole (a file has no train/validation/test of its own).
WHOLE_FILE = "all rows"


def evaluation_rows(run: Run, data: str | None, split: str | None,
                    text_column: str | None = None, label_column: str | None = None
                    ) -> tuple[pd.DataFrame, str, str]:
    """The labelled rows to evaluate on, and the data name and split they come from.

    On the run's own dataset the default is its test split when it has one, else the
    run's own validation rows (rebuilt exactly, fingerprint checked): never rows the model
    trained on. Asking for `train` there works, with a warning. Another source defaults
    to its test, else validation, else its only split.
    """
    settings = run.config.data
    own = data is None or data == settings.dataset
    data = data or settings.dataset
    if own:
        split = split or ("test" if "test" in available_splits(data) else "validation")
        if split == "validation":
            return run.rebuilt_splits().validation, data, split
        if split == "train":
            console.warn(f"evaluating on {data} (train): these rows include the ones "
                          f"{run.path} was trained on, so the metrics are optimistic")
        text_column = text_column or settings.text_column
        label_column = label_column or settings.label_column
    frame, split = load_eval_split(data, split, run.labels, run.task, text_column,
                                   label_column, strip_html=settings.clean_html)
    if frame.empty:
        raise SentituneError(f"{data} ({split}) has no rows to evaluate; give a labelled file")
    if not own and available_splits(data) == ["train"]:
        split = WHOLE_FILE  # a plain file has no splits: its one "train" split is all of it
    return frame, data, split


def check(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    max_failure_rate: float | None = None,
    examples: int = 5,
    classifier: Classifier | None = None,
    config: InferenceConfig | None = None,
    **settings: Any,
) -> CheckResult:
    """Run the behavioural tests on a binary run; write RUN_DIR/check/behavioral.json.

    A test fails the check when its failure rate is above `max_failure_rate` (no gate
    when None); the names of those tests are in `failed`. `examples` failing cases are
    kept per test. `config` and `settings`: InferenceConfig fields (backend, batch_size).
    """
    config = inference_config(config, **settings)
    run = classifier.run if classifier is not None else Run.open(run_dir)
    _require_behavioral(run, "sentitune check")
    if max_failure_rate is not None and not 0 <= max_failure_rate <= 1:
        raise SentituneError(f"--max-failure-rate must be in [0, 1], got {max_failure_rate}")
    classifier = classifier or Classifier.from_pretrained(run, config)
    results = run_behavioral_tests(
        lambda batch: classifier.predict_proba(batch, config.batch_size), run.labels, examples)
    failed = [] if max_failure_rate is None else [
        t["name"] for t in results["tests"] if t["failure_rate"] > max_failure_rate]
    results |= {"max_failure_rate": max_failure_rate, "failed": failed}
    out = Path(output) if output else run.path / "check" / "behavioral.json"
    files.write_json(out, results)
    return CheckResult(out, results, failed)


def check_summary(results: dict) -> list[str]:
    """Behavioural results as lines for a terminal: one per test, then its failing cases."""
    lines = []
    for test in results["tests"]:
        lines.append(f"{test['failure_rate']:6.1%}  {test['failures']:>3}/{test['n']:<3} "
                     f"{test['kind']:<3}  {test['name']} [{test.get('capability', '')}]")
        for e in test["examples"]:
            if "variant" in e:
                lines.append(f"          {e['text']!r} -> {e['predicted']} "
                             f"({e['p_positive']:.2f}), {e['variant']!r} -> "
                             f"{e['variant_predicted']} ({e['variant_p_positive']:.2f})")
            else:
                lines.append(f"          {e['text']!r} -> {e['predicted']} "
                             f"({e['p_positive']:.2f}), expected {e['expected']}")
    if results.get("capabilities"):
        lines.append("by capability: " + ", ".join(
            f"{name} {rate:.1%}" for name, rate in results["capabilities"].items()))
    lines.append(f"overall failure rate {results['overall_failure_rate']:.1%}")
    return lines


# ----------------------------------------------------------------- scoring


def _score(classifier: Classifier, texts: list[str], labels: list, batch_size: int,
           decision: Decision) -> tuple[_Scores, np.ndarray]:
    """The classifier's answers on `texts` under `decision`, and its raw logits (before the
    temperature)."""
    logits, truncated, windows = classifier.scored(texts, batch_size)
    answers = classifier.decide(logits, truncated, decision)
    if classifier.task == "multilabel":
        y_true = multi_hot(labels, len(classifier.labels)).astype(int)
        correct = (y_true == answers.chosen).all(axis=1)
    else:
        y_true = np.asarray(labels, dtype=int)
        correct = answers.chosen == y_true
    scores = _Scores(answers.probs, y_true, answers.chosen, answers.confidence, correct,
                     truncated, answers.review, windows)
    return scores, logits.astype(np.float64) * decision.temperature


def _calibration(scores: _Scores, raw_logits: np.ndarray, task: str,
                 temperature: float) -> tuple[dict, list[dict]]:
    """ECE before/after the temperature, and reliability bins of the saved model."""
    if task == "multilabel":
        p = scores.probs.reshape(-1)
        pairs, truth = np.stack([1 - p, p], axis=1), scores.y_true.reshape(-1)
        ece = expected_calibration_error(pairs, truth, ECE_BINS)
        return {"ece": ece, "ece_after_temperature": ece, "temperature": 1.0,
                "note": "multi-label: ECE of every (example, label) probability; "
                        "no temperature is fitted"}, reliability_bins(pairs, truth, ECE_BINS)
    return {
        "ece": expected_calibration_error(probabilities(raw_logits, task), scores.y_true,
                                          ECE_BINS),
        "ece_after_temperature": expected_calibration_error(scores.probs, scores.y_true,
                                                            ECE_BINS),
        "temperature": temperature,
    }, reliability_bins(scores.probs, scores.y_true, ECE_BINS)


def _choose_threshold(classifier: Classifier, scores: _Scores, texts: list[str],
                      validation: pd.DataFrame | None, target: float | None,
                      batch_size: int, decision: Decision) -> tuple[float, dict]:
    """The review threshold in force, and how it was chosen (with its validation numbers)."""
    if validation is None:
        return decision.review_threshold, {"source": "run default"}
    task = classifier.task
    val_scores = (scores if list(validation["text"]) == texts else
                  _score(classifier, list(validation["text"]), list(validation["label"]),
                         batch_size, decision)[0])
    threshold = threshold_for_target(val_scores.review, val_scores.correct, target, task)
    delivered = review_stats(val_scores.review, val_scores.correct, threshold, task)
    reached = (delivered["accuracy_accepted"] or 0.0) >= target - 1e-12
    if not reached:
        console.warn(f"no review threshold reaches accuracy {target} on the run's "
                      "validation split; the saved threshold sends all of it to review")
    return threshold, {"source": "target accuracy on the run's validation split",
                       "target_accuracy": target, "reached": reached,
                       **{f"validation_{key}": value for key, value in delivered.items()}}


def _by_confidence(scores: _Scores, mask: np.ndarray, descending: bool = False) -> np.ndarray:
    """Indices where `mask` holds, by confidence (lowest first unless `descending`)."""
    picked = np.flatnonzero(mask)
    key = -scores.confidence[picked] if descending else scores.confidence[picked]
    return picked[np.argsort(key, kind="stable")]


def _record(text: str, i: int, scores: _Scores, labels: list[str], task: str,
            review_threshold: float, slices: list[str]) -> dict:
    """One example in the prediction schema, plus its truth and slices."""
    record = schema.prediction(
        text, labels, scores.probs[i], chosen=scores.y_pred[i], score=scores.confidence[i],
        needs_review=scores.review[i] < accept_cut(review_threshold, task),
        truncated=scores.truncated[i], windows=scores.windows[i])
    if task == "multilabel":
        record["true_labels"] = [labels[j] for j in np.flatnonzero(scores.y_true[i])]
    else:
        record["true_label"] = labels[scores.y_true[i]]
    return record | {"correct": bool(scores.correct[i]), "slices": slices}


# ----------------------------------------------------------------- run data


def _why_no_behavioral(task: str, labels: list[str], behavioral: bool | None) -> str | None:
    """Why the behavioural tests are skipped, or None when they should run by default."""
    if behavioral is False:
        return "turned off"
    if task != "binary":
        return f"behavioural tests need a binary run; this run is {task}"
    try:
        positive_index(labels)
    except SentituneError:
        return f"labels {labels} are not negative/positive"
    return None


def _require_behavioral(run: Run, option: str) -> None:
    if run.task != "binary":
        raise SentituneError(
            f"{option} runs binary sentiment tests but {run.path} is a {run.task} run "
            f"({', '.join(run.labels)}); use it on a binary negative/positive run")
    positive_index(run.labels)  # raises when the two labels are not negative/positive


def _report_summary(run: Run, summary: dict) -> dict:
    """What the report's first table says about the run and the evaluation."""
    from datetime import datetime, timezone

    config = run.config
    return {
        "run": (run.path.name if isinstance(summary["run"], str)
                else "ensemble of " + ", ".join(Path(p).name for p in summary["run"])),
        "model": config.model.model,
        "method": config.training.method,
        "task": run.task,
        "trained on": config.data.dataset,
        "evaluated on": f"{summary['data']} ({summary['split']})",
        "max length": config.data.max_length,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ----------------------------------------------------------------- writing


def _figures(run: Run, out_dir: Path, found: dict, labels: list[str], scores: _Scores,
             bins: list[dict], lengths: list[int]) -> dict[str, Path]:
    """Every figure of the report as a PNG in `out_dir`, by report name."""
    figures = {}
    if (run.path / "curves.png").is_file():
        with files.atomic_path(out_dir / "learning_curves.png") as partial:
            shutil.copyfile(run.path / "curves.png", partial)
        figures["learning_curves"] = out_dir / "learning_curves.png"
    if "confusion_matrix" in found:
        files.write_json(out_dir / "confusion_matrix.json",
                         {"labels": labels, "matrix": found["confusion_matrix"]})
        figures["confusion_matrix"] = plot_confusion(found["confusion_matrix"], labels,
                                                     out_dir / "confusion_matrix.png")
    figures["reliability"] = plot_reliability(bins, out_dir / "reliability.png")
    review = found["review"]
    figures["coverage_accuracy"] = plot_coverage_accuracy(
        coverage_accuracy_curve(scores.review, scores.correct),
        out_dir / "coverage_accuracy.png",
        chosen={**review, "reached": review["accuracy_accepted"] is not None})
    figures["slice_accuracy"] = plot_slice_accuracy(found["slices"],
                                                    out_dir / "slice_accuracy.png")
    errors = [n for n, ok in zip(lengths, scores.correct, strict=True) if not ok]
    if errors:  # a histogram of nothing says nothing
        figures["error_lengths"] = plot_error_lengths(lengths, errors,
                                                      out_dir / "error_lengths.png")
    return figures


def _write_records(path: Path, records: list[dict], columns: list[str]) -> None:
    """Write `records` as JSONL or CSV (by suffix, with `columns` even when empty)."""
    if path.suffix.lower() == ".jsonl":
        files.write_jsonl(path, records)
        return
    with files.atomic_path(path) as partial:
        pd.DataFrame([schema.flat_row(r) for r in records], columns=columns).to_csv(
            partial, index=False)
