"""sentitune: fine-tune transformers into sentiment classifiers and put them to work.

    import sentitune
    run = sentitune.train("sst2-minilm", "runs/sst2", train_samples=1000)
    sentitune.evaluate("runs/sst2")
    sentitune.predict("runs/sst2", ["A quietly moving film."])

Each CLI verb is a function of the same name with the same options (`train`, `data`,
`evaluate`, `check`, `predict`, `export`, `serve`, `compare`, `tune`, `distill`, `audit`,
`explain`, `select`, `presets`; `sentitune labels add|stats|export` are `add_texts`,
`label_stats` and `export_labels`, over a `LabelStore`),
spelled as the flags are (`quiet=True` for `--quiet`; `progress=False` works too);
`Classifier` keeps a loaded model for repeated scoring (`load_classifier` loads one run, or
several as an `Ensemble`) and `Run` reads a run directory. No module is
named like a verb, so a function never gets replaced by a submodule of the same name.
Heavy libraries (torch, transformers) load on first use, so `import sentitune` is quick.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "sentitune.config",
    "DataConfig": "sentitune.config",
    "ModelConfig": "sentitune.config",
    "TrainingConfig": "sentitune.config",
    "TuneConfig": "sentitune.config",
    "DistillConfig": "sentitune.config",
    "AuditConfig": "sentitune.config",
    "load_preset": "sentitune.config",
    "presets": "sentitune.config",
    "SentituneError": "sentitune.errors",
    "Run": "sentitune.run",
    "Decision": "sentitune.decision",
    "load_splits": "sentitune.dataset.splits",
    "data": "sentitune.dataset.explore",
    "train": "sentitune.training",
    "evaluate": "sentitune.evaluation.evaluator",
    "check": "sentitune.evaluation.evaluator",
    "Classifier": "sentitune.inference.classifier",
    "predict": "sentitune.inference.scoring",
    "export": "sentitune.exporting.run_export",
    "serve": "sentitune.server.app",
    "create_app": "sentitune.server.app",
    "compare": "sentitune.comparison",
    "tune": "sentitune.tuning",
    "distill": "sentitune.distillation",
    "Ensemble": "sentitune.inference.ensemble",
    "load_classifier": "sentitune.inference.ensemble",
    "select": "sentitune.selection",
    "LabelStore": "sentitune.labelstore.store",
    "add_texts": "sentitune.labelstore.api",
    "label_stats": "sentitune.labelstore.api",
    "export_labels": "sentitune.labelstore.api",
    "audit": "sentitune.auditing",
    "explain": "sentitune.inference.explanations",
}

__all__ = sorted(_EXPORTS) + ["__version__"]
# The CLI verbs: each also takes the CLI's option names (sentitune.options).
_VERBS = ("train", "data", "evaluate", "check", "predict", "export", "serve", "compare", "tune",
          "distill", "audit", "explain", "select", "presets")


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        if name in _VERBS:
            from sentitune.options import accepting_cli_names

            value = accepting_cli_names(value)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'sentitune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
