"""Inference: load a run, score texts or files.

    encoding   texts to token ids with the run's tokenizer (`tokenizers` only, no torch)
    backends   torch / adapter / onnx / onnx-int8 behind one interface, chosen by name
    classifier `Classifier`: preprocessing, length-sorted batches, the prediction schema
    scoring    `score_file`: stream a file, keep its other columns, write atomically
"""

from sentitune.inference.backends import BACKENDS
from sentitune.inference.classifier import Classifier, length_batches

__all__ = ["BACKENDS", "Classifier", "length_batches"]
