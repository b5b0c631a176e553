"""`sentitune predict`: texts scored in memory (`predict`), or files scored into a file
(`score_file`), on this process or on Ray Data.

The text column is the one named, else the one the run was trained on (when the file has
it), else the same guessing rule training uses. The file's other columns (an `id`, say)
pass through to the output, so results join back to their rows; an input column whose
name a prediction field also uses is written as `input_NAME`. Every input row gets one
output row, in input order (the pipeline: `sentitune.inference.rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentitune import files
from sentitune.config import InferenceConfig, inference_config
from sentitune.dataset.sources import iter_table
from sentitune.errors import SentituneError
from sentitune.inference.classifier import PER_CALL, Classifier, RunDirs
from sentitune.inference.columns import text_column_for
from sentitune.inference.rows import (
    ENGINES,
    FileScores,
    OutputWriter,
    Tally,
    check_output,
    errors_path,
    input_files,
    score_rows,
    write_errors,
)

CHUNK_ROWS = 2048  # rows read, scored and written at a time


def predict(run_dir: RunDirs | Classifier, texts: Sequence[str] | str, *,
            config: InferenceConfig | None = None, **settings: Any) -> list[dict]:
    """One prediction per text, in input order; an empty text gets a record marked with
    `error` and `needs_review` (`sentitune.schema.unscored`). Several run directories
    answer as an ensemble. `config` and the flat `settings` are InferenceConfig fields
    (backend, batch_size, long_text, review_threshold, ...); a loaded `Classifier` takes
    only the per-call ones (batch_size and the review settings). Files: `score_file`."""
    if "input" in settings or "output" in settings:
        raise SentituneError("files are scored by sentitune.score_file(run, input, output)")
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise SentituneError("give texts to classify or --input FILE")
    if isinstance(run_dir, Classifier):
        classifier = run_dir
        explain = settings.pop("explain", None) or (config or classifier.config).explain
        per_call = {k: getattr(config, k) for k in PER_CALL} if config else {}
        found = classifier.predict(texts, **(per_call | settings))
    else:
        classifier = Classifier.from_pretrained(run_dir, config, **settings)
        explain = classifier.config.explain
        found = classifier.predict(texts)
    if explain is not None:
        _attach_explanations(classifier, found, explain, settings.get("batch_size"))
    return found


def _attach_explanations(classifier: Classifier, found: list[dict], method: str,
                         batch_size: int | None) -> None:
    """Each scored record's word attributions for its label, under `explanation`."""
    from sentitune.inference.explanations import explain as explain_texts

    scored = [r for r in found if "error" not in r]
    why = explain_texts(classifier, [r["text"] for r in scored], method,
                        batch_size=batch_size or classifier.config.batch_size)
    for record, one in zip(scored, why, strict=True):
        record["explanation"] = {k: one[k] for k in ("label", "method", "words")}


def score_file(run_dir: RunDirs | Classifier, input: str | Path, output: str | Path, *,
               text_column: str | None = None, keep_columns: bool = True,
               engine: str = "local", address: str | None = None,
               ray_cpus: int | None = None, actors: int | None = None,
               progress: bool = True, config: InferenceConfig | None = None,
               **settings: Any) -> FileScores:
    """Score every row of `input` (a file or a folder of files) into `output` (.jsonl,
    .csv or .parquet), written atomically, with the rows that could not be scored listed
    in OUTPUT.errors.jsonl; `config` and `settings` as for `predict`.

    `engine="ray"` scores with Ray Data on a local Ray of `ray_cpus` CPUs or the cluster
    at `address`, with `actors` model replicas (`sentitune.inference.ray_engine`).
    """
    if settings.get("explain") is not None or (config is not None and config.explain):
        raise SentituneError("--explain explains texts given directly; for a file, use "
                             "`sentitune explain` or evaluate's report")
    if engine not in ENGINES:
        raise SentituneError(f"--engine must be one of {', '.join(ENGINES)}, not '{engine}'")
    if engine == "local" and (address, ray_cpus, actors) != (None, None, None):
        raise SentituneError("--address, --ray-cpus and --actors go with --engine ray")
    source, target = Path(input), Path(output)
    suffix = check_output(target)
    if isinstance(run_dir, Classifier):
        config = (config or run_dir.config).replace(**settings)
        run_dir = [m.run for m in run_dir.members] if engine == "ray" else run_dir
    else:
        config = inference_config(config, **settings)
    if engine == "ray":
        from sentitune.inference.ray_engine import score_with_ray

        return score_with_ray(run_dir, source, target, config, text_column=text_column,
                              keep_columns=keep_columns, address=address, num_cpus=ray_cpus,
                              actors=actors, progress=progress)
    paths = input_files(source)
    classifier = (run_dir if isinstance(run_dir, Classifier)
                  else Classifier.from_pretrained(run_dir, config))
    classifier.decision_for(config)  # a --threshold the run cannot take fails before reading
    return _score_locally(classifier, paths, target, suffix, text_column, keep_columns,
                          progress, {k: getattr(config, k) for k in PER_CALL})


def _score_locally(classifier: Classifier, paths: list[Path], target: Path, suffix: str,
                   text_column: str | None, keep_columns: bool, progress: bool,
                   per_call: dict) -> FileScores:
    from tqdm.auto import tqdm

    tally, column = Tally(), None
    # delay: a bar appears only for work that takes a while, never before an early error.
    bar = tqdm(unit="texts", desc="predict", disable=not progress, delay=1.0)
    with files.atomic_path(errors_path(target)) as errors_partial, \
            errors_partial.open("w", encoding="utf-8") as errors_out, \
            files.atomic_path(target) as partial:
        writer = OutputWriter(partial, suffix)
        try:
            for path in paths:
                start = 0
                for frame in iter_table(path, CHUNK_ROWS, encoding_errors="replace"):
                    if column is None:
                        column = text_column_for(classifier, [str(c) for c in frame.columns],
                                                 text_column)
                    records, errors = score_rows(classifier, frame, column, keep_columns,
                                                 list(range(start, start + len(frame))),
                                                 **per_call)
                    start += len(frame)
                    writer.write(records)
                    write_errors(errors_out, path, errors)
                    tally.add(records)
                    bar.update(len(frame))
        finally:
            writer.close()
    bar.close()
    return FileScores(target, errors_path(target), text_column=column or "", **tally.counts())

