"""Multi-label thresholds on GoEmotions: how many labels per text, before and after issue 22.

    SENTITUNE_DATA_DIR=../shared/data nice -n 5 python benchmarks/multilabel_thresholds.py
        [--arms small full] [--full-epochs 2] [--runs-dir runs/bench/multilabel]

Trains the bundled MiniLM with the `goemotions-minilm` preset's settings (max length 64,
lr 1e-4, batch 32, inverse-frequency class weights) once per arm:

    small   600 training / 200 validation rows, 1 epoch (the issue's reproduction)
    full    all 43,410 training rows, the whole dev split (5,426) as validation

then scores the GoEmotions test split (5,427 texts) with the one model under two rules,
fitted on the same validation probabilities:

    before  per-label F1-optimal thresholds (`tune_label_thresholds`), no fallback: a text
            may get no label (the rule until issue 22)
    after   the run's saved decision (`fit_label_thresholds`: the same cuts shifted jointly
            in logit space to the best validation macro-F1 within 2x the true labels per
            text; a text no label passes answers its top label)

and two ablations (each half of the change alone) plus the fallback choosing the most
probable label instead of the one nearest its cut. Runs checkpoint every 10 minutes and
continue when the script is started again; finished runs are only re-scored. The anchor is
the GoEmotions paper's BERT-base (Demszky et al. 2020, Table 4: test macro-F1 0.46, full
data, 4 epochs, a model 5x MiniLM's size).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from common import emit, machine

RESULTS = Path(__file__).resolve().parent / "results" / "multilabel_thresholds-minilm-cpu.json"
ARMS = {
    "small": {"train_samples": 600, "val_samples": 200, "epochs": 1},
    "full": {"train_samples": None, "val_samples": None},  # epochs: --full-epochs
}
ANCHOR = {"value": 0.46, "metric": "f1_macro", "split": "test",
          "source": "BERT-base on full GoEmotions, 28 labels (Demszky et al. 2020, Table 4)"}


def rule_metrics(y: np.ndarray, probs: np.ndarray, cuts: np.ndarray, fallback: bool,
                 labels: list[str], by_probability: bool = False) -> dict:
    from sentitune.decision import cardinality
    from sentitune.metrics import classification_metrics

    if by_probability:  # the ablation: an empty row answers its most probable label
        pred = (probs >= cuts).astype(int)
        empty = np.flatnonzero(pred.sum(axis=1) == 0)
        pred[empty, probs[empty].argmax(axis=1)] = 1
        from sklearn.metrics import f1_score

        return {"f1_macro": round(float(f1_score(y, pred, average="macro", zero_division=0)), 4),
                "f1_micro": round(float(f1_score(y, pred, average="micro", zero_division=0)), 4),
                "cardinality": _rounded(cardinality(y, pred, fallback_rows=(
                    probs >= cuts).sum(axis=1) == 0))}
    m = classification_metrics(y, probs, "multilabel", labels, cuts, fallback=fallback)
    return {"f1_macro": round(m["f1_macro"], 4), "f1_micro": round(m["f1_micro"], 4),
            "f1_samples": round(m["f1_samples"], 4), "exact_match": round(m["exact_match"], 4),
            "cardinality": _rounded(m["cardinality"])}


def _rounded(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def run_arm(name: str, args: argparse.Namespace) -> dict:
    import sentitune
    from sentitune.config import load_preset
    from sentitune.dataset import load_eval_split
    from sentitune.decision import fit_label_thresholds, tune_label_thresholds
    from sentitune.inference.classifier import Classifier
    from sentitune.metrics import multi_hot

    settings = ARMS[name] | ({"epochs": args.full_epochs} if name == "full" else {})
    run_dir = Path(args.runs_dir) / name
    started = time.perf_counter()
    if (run_dir / "metrics.json").is_file():
        print(name, "finished earlier: re-scoring", run_dir, flush=True)
    else:  # checkpoints every 10 minutes: starting the script again continues the run
        sentitune.train(load_preset("goemotions-minilm"), run_dir, resume=True,
                        progress=False, checkpoint_every="10m", **settings)
    train_wall = time.perf_counter() - started
    run = sentitune.Run.open(run_dir)
    classifier = Classifier.from_pretrained(run_dir)
    labels = classifier.labels
    validation = run.rebuilt_splits().validation
    test, split = load_eval_split("goemotions", "test", labels, "multilabel")
    started = time.perf_counter()
    val_probs = classifier.predict_proba(list(validation["text"]), 128)
    test_probs = classifier.predict_proba(list(test["text"]), 128)
    score_wall = time.perf_counter() - started
    np.savez_compressed(run_dir / "probs.npz", validation=val_probs, test=test_probs)
    y_val = multi_hot(list(validation["label"]), len(labels)).astype(int)
    y_test = multi_hot(list(test["label"]), len(labels)).astype(int)

    before = tune_label_thresholds(val_probs, y_val)
    after = np.asarray(run.decision.label_thresholds)
    fit = fit_label_thresholds(val_probs, y_val)  # as training fitted it, for its report
    rules = {
        "before": (before, False, False),
        "after": (after, True, False),
        "ablation_shift_without_fallback": (after, False, False),
        "ablation_fallback_without_shift": (before, True, False),
        "ablation_after_fallback_by_probability": (after, True, True),
    }
    scored = {
        rule: {"validation": rule_metrics(y_val, val_probs, cuts, fb, labels, by_p),
               "test": rule_metrics(y_test, test_probs, cuts, fb, labels, by_p)}
        for rule, (cuts, fb, by_p) in rules.items()
    }
    m = run.metrics
    record = {
        "arm": name,
        "settings": {"preset": "goemotions-minilm", **settings,
                     "model": "minilm (bundled all-MiniLM-L6-v2, 22.7M params)"},
        "rows": run.facts["rows"] | {"test": len(test)},
        "test_split": split,
        **scored,
        "test_f1_macro_after_minus_before": round(scored["after"]["test"]["f1_macro"]
                                                  - scored["before"]["test"]["f1_macro"], 4),
        "threshold_fit": _rounded({k: v for k, v in fit.report().items()
                                   if k != "cardinality"}),
        "thresholds": {"before": dict(zip(labels, np.round(before, 4).tolist(), strict=True)),
                       "after": dict(zip(labels, np.round(after, 4).tolist(), strict=True))},
        "saved_threshold_fit": m.get("threshold_fit"),
        "metrics_json_validation_cardinality": m["validation"].get("cardinality"),
        "best_epoch": m["best_epoch"],
        "history": run.history(),
        "train_runtime_s": round(m["train_runtime_s"], 1),
        "train_samples_per_s": round(m["train_samples_per_s"], 1),
        "sessions": m.get("sessions"),
        "train_wall_this_call_s": round(train_wall, 1),
        "scoring_wall_s": round(score_wall, 1),
        "data_fingerprint": run.facts["data_fingerprint"],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(name, {r: scored[r]["test"] for r in ("before", "after")}, flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--full-epochs", type=float, default=2.0)
    parser.add_argument("--runs-dir", default="runs/bench/multilabel")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Arms run separately keep each other's records.
    arms = {}
    if args.output.is_file():
        arms = json.loads(args.output.read_text()).get("arms", {})
    for name in args.arms:
        arms[name] = run_arm(name, args)
        arms[name]["machine"] = machine(load_start)
        arms[name]["command"] = (f"python benchmarks/multilabel_thresholds.py --arms {name}"
                                 + (f" --full-epochs {args.full_epochs:g}"
                                    if name == "full" else ""))
        result = {"benchmark": "multilabel_thresholds (issue 22)", "anchor": ANCHOR,
                  "arms": {k: arms[k] for k in ARMS if k in arms}}
        emit(result, str(args.output))


if __name__ == "__main__":
    main()
