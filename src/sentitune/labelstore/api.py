"""The `sentitune labels` actions as functions: `add_texts` (add), `label_stats` (stats),
`export_labels` (export), each with the options of its action."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sentitune.errors import SentituneError
from sentitune.labelstore.agreement import agreement
from sentitune.labelstore.export import Exported, labelled_rows, write_labels
from sentitune.labelstore.intake import records_from_file
from sentitune.labelstore.store import TASKS, LabelStore, shown_url, store_url


def open_for(store: str, run: str | None = None, labels: str | None = None,
             task: str | None = None) -> tuple[LabelStore, str | None]:
    """The store, created for the run's labels (or the named ones) when new; a store of
    another task is refused. Also the run's name, recorded with the model's answers."""
    if run is not None:
        from sentitune.run import Run

        opened = Run.open(run)
        return (LabelStore.open(store, labels=opened.labels, task=opened.task),
                opened.path.resolve().name)
    if labels is not None:
        names = [name.strip() for name in labels.split(",") if name.strip()]
        task = task or ("binary" if len(names) == 2 else "multiclass")
        if task not in TASKS:
            raise SentituneError(f"--task must be one of {', '.join(TASKS)}, not '{task}'")
        return LabelStore.open(store, labels=names, task=task), None
    return LabelStore.open(store), None


def add_texts(store: str, source: str | Path, *, run: str | None = None,
              labels: str | None = None, task: str | None = None, everything: bool = False,
              text_column: str | None = None) -> dict:
    """Add a file's texts to the store (see `intake`); what was read and added."""
    opened, run_name = open_for(store, run, labels, task)
    records, facts = records_from_file(source, text_column=text_column, everything=everything,
                                       multilabel=opened.task == "multilabel")
    added = opened.add(records, source=f"file:{Path(source).name}", run=run_name)
    opened.close()
    return facts | {"added": added.added, "already_in_store": added.already,
                    "empty": added.empty, "store": shown_url(store_url(store))}


def label_stats(store: str) -> dict:
    """Texts, annotations per annotator and label, ties, and annotator agreement."""
    opened = LabelStore.open(store)
    annotations = opened.annotations()
    rows, ties = labelled_rows(opened)
    given = [a for a in annotations if not a["skipped"]]
    per_label: Counter = Counter()
    for row in rows:
        value = row.get("labels", row.get("label"))
        per_label.update(value if isinstance(value, list) else [value])
    report = {
        "store": shown_url(opened.url), "task": opened.task, "labels": opened.labels,
        "texts": opened.item_count(), "labelled_texts": len(rows), "tied_texts": ties,
        "annotations": len(given), "skips": len(annotations) - len(given),
        "per_annotator": dict(Counter(a["annotator"] for a in given).most_common()),
        "consensus_labels": {name: per_label.get(name, 0) for name in opened.labels},
        "agreement": agreement(annotations, opened.labels, opened.task),
    }
    opened.close()
    return report


def export_labels(store: str, output: str | Path, annotator: str | None = None) -> Exported:
    """One consensus label per text to .csv or .jsonl (see `export.labelled_rows`)."""
    opened = LabelStore.open(store)
    try:
        return write_labels(opened, output, annotator)
    finally:
        opened.close()
