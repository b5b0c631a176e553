"""Which augmentations keep a text's label? The evidence behind train's label-keeping methods.

    python benchmarks/augment_labels.py --teacher runs/sst2-minilm-full --texts 4000 \
        --output benchmarks/results/augment_labels-minilm-cpu.json

`sentitune train` gives an augmented copy its source text's label, so it may only use methods
that rarely change sentiment (identity, mask); `distill` uses every method because its
teachers label each copy. This measures that rule: for each method alone (and train's and
distill's defaults together), one copy of each of --texts random SST-2 training phrases, made
as training makes them (dataset.augment.augmented_copies, seeded), and the share of copies
whose teacher label differs from the teacher's label of their source: the share of copies a
train run would label wrongly, read through a 0.90-accurate judge. Shares by phrase length
too, since a negation decides a short phrase and rarely a long sentence.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from common import emit, machine

LENGTHS = {"<=6 words": (1, 6), "7-15 words": (7, 15), ">15 words": (16, 10**6)}


def changed_share(same: np.ndarray) -> float | None:
    return round(float(1 - same.mean()), 3) if len(same) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="runs/sst2-minilm-full")
    parser.add_argument("--texts", type=int, default=4000, help="training phrases sampled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sentitune.config import (
        LABEL_KEEPING_AUGMENTATIONS,
        TRANSFER_SET_AUGMENTATIONS,
        TrainingConfig,
    )
    from sentitune.dataset.augment import augmented_copies
    from sentitune.dataset.sources import read_source
    from sentitune.inference.classifier import Classifier

    phrases = list(read_source("sst2")[0]["train"]["text"])  # $SENTITUNE_DATA_DIR, else the hub
    rng = np.random.default_rng(args.seed)
    texts = [phrases[i] for i in rng.choice(len(phrases), args.texts, replace=False)]
    teacher = Classifier.from_pretrained(args.teacher, device="cpu")
    model_dir = teacher.run.model_dir  # its input embeddings give the neighbours
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    source_labels = teacher.predict_proba(texts).argmax(axis=1)
    lengths = np.array([len(t.split()) for t in texts])

    # Frames are left out: their rule, not their source, says what their label should be.
    arms = {m: (m,) for m in TRANSFER_SET_AUGMENTATIONS}
    arms |= {"train default (" + ",".join(LABEL_KEEPING_AUGMENTATIONS) + ")":
             LABEL_KEEPING_AUGMENTATIONS, "distill default": TRANSFER_SET_AUGMENTATIONS}
    result = {"benchmark": "augment_labels", "teacher": args.teacher,
              "texts": args.texts, "seed": args.seed, "methods": {}}
    for name, methods in arms.items():
        settings = TrainingConfig(augment=1, augment_methods=methods, seed=args.seed)
        found, _ = augmented_copies(texts, model, tokenizer, settings, taught=True,
                                    task="binary")
        copies, sources = found.texts, np.array(found.sources, dtype=int)
        same = (teacher.predict_proba(copies).argmax(axis=1) == source_labels[sources]
                if copies else np.array([], dtype=bool))
        by_length = {}
        for bucket, (low, high) in LENGTHS.items():
            inside = (lengths[sources] >= low) & (lengths[sources] <= high)
            by_length[bucket] = {"copies": int(inside.sum()),
                                 "label_changed": changed_share(same[inside])}
        result["methods"][name] = {"copies": len(copies), "copied_share": round(
            len(copies) / len(texts), 3), "label_changed": changed_share(same),
            "by_length": by_length}
        print(name, result["methods"][name]["label_changed"], flush=True)
    result["machine"] = machine(load_start)
    emit(result, args.output)


if __name__ == "__main__":
    main()
