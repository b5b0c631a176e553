"""Scoring a whole file: stream it in chunks, write one prediction per row.

The text column is the one named, else the one the run was trained on (when the file has
it), else the same guessing rule training uses. The file's other columns (an `id`, say)
pass through to the output, so results join back to their rows; an input column whose
name a prediction field also uses is written as `input_NAME`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sentitune import files, schema
from sentitune.dataset.sources import iter_table
from sentitune.dataset.splits import is_blank
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier
from sentitune.inference.columns import passthrough_columns, text_column_for
from sentitune.inference.ensemble import load_classifier

if TYPE_CHECKING:
    from sentitune.inference.ray_engine import RayScores

OUTPUT_SUFFIXES = (".jsonl", ".csv")
ENGINES = ("local", "ray")  # local: this process; ray: Ray Data (ray_engine)


@dataclass(frozen=True)
class FileScores:
    """What `score_file` wrote."""

    output: Path
    texts: int  # predictions written
    needs_review: int
    truncated: int
    empty: int  # rows skipped: no text
    text_column: str


def score_file(classifier: Classifier, source: Path, target: Path, *,
               text_column: str | None = None, keep_columns: bool = True,
               batch_size: int = 64, review_threshold: float | None = None,
               threshold: float | None = None, review_truncated: bool | None = None,
               chunk_size: int = 2048, progress: bool = True) -> FileScores:
    """Score every text of `source` into `target` (.jsonl or .csv), written atomically."""
    from tqdm.auto import tqdm

    source, target = Path(source), Path(target)
    if target.suffix.lower() not in OUTPUT_SUFFIXES:
        raise SentituneError(f"--output must end in .jsonl or .csv, not '{target.name}'")
    if threshold is not None:
        classifier.label_thresholds(threshold)  # a wrong --threshold fails before any reading
    counts = {"texts": 0, "needs_review": 0, "truncated": 0, "empty": 0}
    column = None
    as_jsonl = target.suffix.lower() == ".jsonl"
    # delay: a bar appears only for work that takes a while, never before an early error.
    bar = tqdm(unit="texts", desc="predict", disable=not progress, delay=1.0)
    with files.atomic_path(target) as partial, \
            partial.open("w", newline="", encoding="utf-8") as out:
        writer = None
        for frame in iter_table(source, chunk_size):
            if column is None:
                column = text_column_for(classifier, [str(c) for c in frame.columns],
                                         text_column)
            texts = [t if isinstance(t, str) else "" for t in frame[column]]
            kept = [i for i, text in enumerate(texts) if not is_blank(text)]
            counts["empty"] += len(texts) - len(kept)
            results = classifier.predict([texts[i] for i in kept], batch_size=batch_size,
                                         review_threshold=review_threshold, threshold=threshold,
                                         review_truncated=review_truncated)
            extra = passthrough_columns(frame, column) if keep_columns else None
            for i, result in zip(kept, results, strict=True):
                counts["needs_review"] += result["needs_review"]
                counts["truncated"] += result["truncated"]
                record = ({**extra[i], **result} if extra else result)
                if as_jsonl:
                    out.write(json.dumps(record, ensure_ascii=False, default=files.jsonable)
                              + "\n")
                    continue
                row = schema.flat_row(record)
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
            counts["texts"] += len(results)
            bar.update(len(texts))
    bar.close()
    return FileScores(target, text_column=column or "", **counts)


def predict(run_dir: str | Path | Sequence[str | Path] | Classifier,
            texts: Sequence[str] | str | None = None, *,
            input: str | Path | None = None, output: str | Path | None = None,
            text_column: str | None = None, keep_columns: bool = True, batch_size: int = 64,
            review_threshold: float | None = None, threshold: float | None = None,
            review_truncated: bool | None = None, backend: str = "torch",
            progress: bool = True, engine: str = "local", address: str | None = None,
            ray_cpus: int | None = None, actors: int | None = None,
            long_text: str | None = None, stride: int | None = None,
            explain: str | None = None) -> list[dict] | FileScores | RayScores:
    """`sentitune predict`: predictions for `texts`, or `input` scored into `output`;
    `long_text` and `stride` replace the run's long-text settings. Several run
    directories answer as an ensemble (`sentitune.inference.ensemble`).

    `engine="ray"` scores `input` (a file or a folder of files) with Ray Data on a local
    Ray of `ray_cpus` CPUs or the cluster at `address`, with `actors` model replicas
    (`sentitune.inference.ray_engine`; returns its RayScores).

    `explain` (a method of `sentitune.inference.explanations`) adds each text's word
    attributions for its top label under `explanation`; texts only.
    """
    if explain is not None and texts is None:
        raise SentituneError("--explain explains texts given directly; for a file, use "
                             "`sentitune explain` or evaluate's report")
    if engine not in ENGINES:
        raise SentituneError(f"--engine must be one of {', '.join(ENGINES)}, not '{engine}'")
    if engine == "local" and (address, ray_cpus, actors) != (None, None, None):
        raise SentituneError("--address, --ray-cpus and --actors go with --engine ray")
    if engine == "ray" and (long_text, stride) != (None, None):
        raise SentituneError("--long-text and --stride go with --engine local; --engine ray "
                             "scores with the run's own long-text settings")
    if texts is None and input is None:
        raise SentituneError("give texts to classify or --input FILE")
    if texts is not None and input is not None:
        raise SentituneError("give texts or --input FILE, not both")
    if input is not None and output is None:
        raise SentituneError("--input needs --output FILE.jsonl or FILE.csv")
    if engine == "ray":
        if input is None:
            raise SentituneError("--engine ray scores files: give --input DATA --output FILE")
        from sentitune.inference.ray_engine import score_with_ray

        if isinstance(run_dir, Classifier):
            members = getattr(run_dir, "members", [run_dir])
            run_dir, backend = [m.run.path for m in members], run_dir.backend.name
        runs = [run_dir] if isinstance(run_dir, str | Path) else list(run_dir)
        if len(runs) > 1:
            raise SentituneError("--engine ray scores with one run; use --engine local for "
                                 "an ensemble")
        run_dir = runs[0]
        return score_with_ray(run_dir, input, output, text_column=text_column,
                              keep_columns=keep_columns, batch_size=batch_size,
                              review_threshold=review_threshold, threshold=threshold,
                              review_truncated=review_truncated, backend=backend,
                              address=address, num_cpus=ray_cpus, actors=actors,
                              progress=progress)
    classifier = (run_dir if isinstance(run_dir, Classifier)
                  else load_classifier(run_dir, backend=backend, long_text=long_text,
                                       stride=stride))
    if input is not None:
        return score_file(classifier, Path(input), Path(output), text_column=text_column,
                          keep_columns=keep_columns, batch_size=batch_size,
                          review_threshold=review_threshold, threshold=threshold,
                          review_truncated=review_truncated, progress=progress)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if all(is_blank(t) for t in texts):
        raise SentituneError("all given texts are empty; pass some words to classify")
    texts = [t for t in texts if not is_blank(t)]
    found = classifier.predict(texts, batch_size=batch_size,
                               review_threshold=review_threshold, threshold=threshold,
                               review_truncated=review_truncated)
    if explain is not None:
        from sentitune.inference.explanations import explain as explain_texts

        for result, why in zip(found, explain_texts(classifier, texts, explain,
                                                    batch_size=batch_size), strict=True):
            result["explanation"] = {k: why[k] for k in ("label", "method", "words")}
    return found
