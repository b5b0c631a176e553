"""Are the explanations faithful, and what does each cost per text?

    SENTITUNE_DATA_DIR=../shared/data flock /work/jobs/cpu.lock \
        python benchmarks/explain_faithfulness.py [--run /work/runs/sst2-minilm-full] [--texts 200]

Comprehensiveness as in ERASER (DeYoung et al. 2020): the drop in the predicted label's
probability when the top 10% / 20% of words by attribution are removed from the text,
against removing as many words at random (mean of 5 seeded draws). The goal: at least 2x
random for the methods meant for people (integrated gradients) and for bulk use (occlusion).
Cost: seconds per text of each method on torch CPU (the tokens of SST-2 dev sentences).
Without --run, a small SST-2 MiniLM run is trained first (--train-samples rows, 1 epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from common import emit, machine

RESULTS = Path(__file__).resolve().parent / "results" / "explain_faithfulness-minilm-cpu.json"
SHARES = (0.1, 0.2)
RANDOM_DRAWS = 5


def _without(text: str, words: list[dict], drop: list[int]) -> str:
    kept, at = [], 0
    for i in sorted(drop):
        kept.append(text[at:words[i]["start"]])
        at = words[i]["end"]
    return " ".join("".join(kept + [text[at:]]).split())


def comprehensiveness(classifier, explanations: list[dict], share: float, seed: int
                      ) -> tuple[float, float]:
    """(mean probability drop removing the top `share` words, the same for random words)."""
    from sentitune.inference.explanations import top_words

    rng = np.random.default_rng(seed)
    top, random, owners = [], [], []
    for i, e in enumerate(explanations):
        picked = top_words(e, share)
        top.append(_without(e["text"], e["words"], picked))
        for _ in range(RANDOM_DRAWS):
            drawn = rng.choice(len(e["words"]), len(picked), replace=False).tolist()
            random.append(_without(e["text"], e["words"], drawn))
            owners.append(i)
    labels = np.array([classifier.labels.index(e["label"]) for e in explanations])
    base = np.array([e["score"] for e in explanations])
    p_top = classifier.predict_proba(top)[np.arange(len(top)), labels]
    p_random = classifier.predict_proba(random)[np.arange(len(random)), labels[owners]]
    return float((base - p_top).mean()), float((base[owners] - p_random).mean())


def _small_run(args) -> Path:
    from sentitune.config import load_preset
    from sentitune.training import train

    out = Path(args.runs_dir) / "sst2-minilm-small"
    if not (out / "metrics.json").is_file():
        train(load_preset("sst2-minilm"), out, overwrite=True, progress=False,
              train_samples=args.train_samples, epochs=1.0, max_length=64,
              checkpoint_every=None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a trained SST-2 run (default: train a small one)")
    parser.add_argument("--texts", type=int, default=200, help="SST-2 dev sentences explained")
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--runs-dir", default="runs/bench/explain")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    load_start = os.getloadavg()

    import pandas as pd

    from sentitune.dataset.sources import data_dir
    from sentitune.inference.classifier import Classifier
    from sentitune.inference.explanations import METHODS, explain

    run = Path(args.run) if args.run else _small_run(args)
    classifier = Classifier.from_pretrained(run)
    dev = pd.read_csv(data_dir() / "sst2" / "dev.tsv", sep="\t", quoting=3)
    texts = dev["sentence"].sample(args.texts, random_state=0).tolist()
    out = Path(args.output)
    result = json.loads(out.read_text()) if out.is_file() else {}
    result.setdefault("methods", {})
    for method in METHODS:
        if method in result["methods"]:
            continue
        explain(classifier, texts[:2], method)  # warm-up: first-call costs are not per text
        started = time.perf_counter()
        found = explain(classifier, texts, method)
        seconds = time.perf_counter() - started
        scores = {}
        for share in SHARES:
            top, random = comprehensiveness(classifier, found, share, seed=0)
            scores[f"top_{share:.0%}"] = {"comprehensiveness": round(top, 4),
                                          "random_words": round(random, 4),
                                          "ratio": round(top / random, 2) if random > 0 else None}
        result["methods"][method] = {"seconds_per_text": round(seconds / len(texts), 4),
                                     **scores}
        emit(result, args.output)
    result["setup"] = {"run": str(run), "texts": len(texts), "data": "SST-2 dev sentences",
                       "random_draws": RANDOM_DRAWS,
                       "validation_accuracy": classifier.run.metrics["validation"]["accuracy"]}
    result["machine"] = machine(load_start)
    emit(result, args.output)


if __name__ == "__main__":
    main()
