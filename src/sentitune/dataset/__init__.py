"""Data: from a name, file or folder to clean, labelled, seeded splits.

    sources   built-in datasets, files and aclImdb/ folders; the column-guessing rule
    labels    label cells, task inference, label names and ids
    splits    cleaning (the run's preprocessing), subsets, hold-outs, fingerprints
    explore   the exploratory report behind `sentitune data`
"""

from sentitune.dataset.labels import BINARY_NAMES, label_names_for
from sentitune.dataset.sources import BUILTINS, DATA_DIR_ENV, pick_column, read_source, read_table
from sentitune.dataset.splits import Splits, clean_text, load_eval_split, load_splits

__all__ = ["BINARY_NAMES", "BUILTINS", "DATA_DIR_ENV", "Splits", "clean_text", "label_names_for",
           "load_eval_split", "load_splits", "pick_column", "read_source", "read_table"]
