"""Extra labelled training rows (`--extra-data`): what people labelled in a label store,
or a file of labels, added to the training split after it was cut and subsampled, so
every one of them is trained on and none leaks into validation."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from sentitune.config import DataConfig
from sentitune.dataset.labels import encode_labels
from sentitune.dataset.sources import read_source


def _read(source: str) -> pd.DataFrame:
    from sentitune.labelstore.store import is_store

    if is_store(source):
        from sentitune.labelstore.export import training_frame

        return training_frame(source)
    return read_source(source)[0]["train"]


def with_extra_rows(train: pd.DataFrame, config: DataConfig, names: list[str], task: str,
                    clean_frame: Callable) -> tuple[pd.DataFrame, dict[str, int]]:
    """`train` plus every extra source's rows (labels mapped to the run's names); a
    training row whose text a person labelled again is replaced by that label.
    `clean_frame` is splits' cleaning, passed in so that data flows one way (splits calls
    this module, never the reverse)."""
    from sentitune.labelstore.store import shown_url

    frames, counts = [], {}
    for source in config.extra_data:
        frame, _ = clean_frame(_read(source), config.clean_html, source)
        frames.append(encode_labels(frame, names, task, f"--extra-data {source}"))
        counts[shown_url(source) if "://" in source else source] = len(frame)  # no password
    extra = pd.concat(frames, ignore_index=True).drop_duplicates("text", keep="last")
    kept = train[~train["text"].isin(set(extra["text"]))]
    counts["replaced_training_rows"] = len(train) - len(kept)
    return pd.concat([kept, extra[["text", "label"]]], ignore_index=True), counts
