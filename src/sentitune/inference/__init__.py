"""Inference: load a run, score texts or files.

    encoding   texts to token ids with the run's tokenizer (`tokenizers` only, no torch)
    backends   torch / adapter / onnx / onnx-int8 behind one interface, chosen by name
    classifier `Classifier` (one member per run), `decide`: logits to answers, once
    ensemble   the mean of several members' probabilities; members that fit together
    scoring    `predict` (texts) and `score_file` (files; local or Ray)
    rows       file scoring's one pipeline: rows to records, errors file, jsonl/csv/parquet
    ray_engine `score_file(engine="ray")` on Ray Data
"""

from sentitune.config import BACKENDS
from sentitune.inference.classifier import Classifier, length_batches

__all__ = ["BACKENDS", "Classifier", "length_batches"]
