"""sentitune: fine-tune transformers into sentiment classifiers and put them to work.

    import sentitune
    config = sentitune.load_preset("sst2-minilm")
    run = sentitune.train(config, "runs/sst2")
    clf = sentitune.Classifier.from_pretrained("runs/sst2")
    clf.predict(["A quietly moving film."])

Heavy libraries (torch, transformers) load on first use, so `import sentitune` is quick.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "sentitune.config",
    "DataConfig": "sentitune.config",
    "ModelConfig": "sentitune.config",
    "TrainingConfig": "sentitune.config",
    "load_preset": "sentitune.config",
    "SentituneError": "sentitune.errors",
    "load_splits": "sentitune.data",
    "data_report": "sentitune.explore",
    "train": "sentitune.train",
    "evaluate": "sentitune.evaluate",
    "Classifier": "sentitune.predict",
    "predict_file": "sentitune.predict",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sentitune' has no attribute {name!r}")
