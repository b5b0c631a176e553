"""Reference runs on the source documents' datasets, with per-epoch tables.

    sst2-full     all 67,349 SST-2 training phrases -> dev accuracy (document 002: 90.71%
                  with DistilBERT; goal here >= 0.90 with MiniLM)
    imdb-subset   document 001's recipe (1,000 / 200, lr 2e-5, batch 16, 5 epochs, wd 0.01,
                  max length 512) on MiniLM over 3 seeds, next to its 89.5% (DistilBERT)
    imdb-full     all 25,000 IMDb training reviews (10% held out for validation) -> test
                  accuracy on all 25,000 test reviews (document 001: 93.1%)

Each recipe is the preset shipped for it (sst2-minilm-full, imdb-minilm-subset,
imdb-minilm-full), trained with sentitune's own defaults (dynamic padding, length grouping,
`--precision auto`), checkpointed every 10 minutes (`--resume` continues), and reports the
run's validation metrics, its per-epoch history, runtime and samples/s; imdb-full is also
evaluated on the test set. Hours on a CPU, minutes on a GPU:

    python benchmarks/reference_runs.py --recipes sst2-full --output results/x.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from common import add_run_flags, emit, machine

RECIPES = {
    "sst2-full": {"preset": "sst2-minilm-full", "overrides": {}, "seeds": [42], "test": False},
    "imdb-subset": {"preset": "imdb-minilm-subset", "overrides": {}, "seeds": [42, 43, 44],
                    "test": False},
    "imdb-full": {"preset": "imdb-minilm-full", "overrides": {}, "seeds": [42], "test": True},
}


def run_recipe(name: str, recipe: dict, runs_dir: Path, model: str | None,
               extra: dict, resume: bool, seeds: list[int] | None = None) -> dict:
    import sentitune
    from sentitune.config import load_preset

    overrides = recipe["overrides"] | extra | ({"model": model} if model else {})
    rows = []
    for seed in seeds or recipe["seeds"]:
        started = time.perf_counter()
        run_dir = runs_dir / f"{name}-{seed}"
        if resume and (run_dir / "metrics.json").is_file():
            print(name, seed, "finished earlier: reusing", run_dir, flush=True)
        else:  # checkpoints every 10 minutes: --resume continues an interrupted run
            sentitune.train(load_preset(recipe["preset"]), run_dir, resume=resume,
                            overwrite=not resume, progress=False, seed=seed,
                            checkpoint_every="10m", **overrides)
        run = sentitune.Run.open(run_dir)
        m = run.metrics
        row = {
            "seed": seed,
            "run": str(run_dir),
            "validation": {k: round(m["validation"][k], 4)
                           for k in ("accuracy", "f1", "f1_macro", "loss")},
            "validation_rows": run.facts["rows"]["validation"],
            "train_rows": run.facts["rows"]["train"],
            "best_epoch": m["best_epoch"],
            "history": run.history(),
            "train_runtime_s": m["train_runtime_s"],
            "train_samples_per_s": m["train_samples_per_s"],
            "precision": run.facts.get("precision"),
            "wall_s": round(time.perf_counter() - started, 1),
        }
        if recipe["test"]:
            found = sentitune.evaluate(run_dir, split="test").metrics
            row["test"] = {k: round(found[k], 4) for k in ("accuracy", "f1")}
            row["test_rows"] = found["n"]
        rows.append(row)
        print(name, seed, row["validation"], row.get("test"), flush=True)
    accuracies = [row["validation"]["accuracy"] for row in rows]
    summary = {"preset": recipe["preset"], "overrides": overrides, "runs": rows,
               "validation_accuracy_mean": round(sum(accuracies) / len(accuracies), 4),
               "validation_accuracy_range": [min(accuracies), max(accuracies)],
               "validation_accuracy_std": round(statistics.pstdev(accuracies), 4)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--model", help="replace the bundled MiniLM (e.g. a local copy)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="extra settings for every recipe, e.g. truncation=head+tail")
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="train each recipe once per seed (default: the recipe's own)")
    add_run_flags(parser, "runs/reference")
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import yaml

    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    result = {"benchmark": "reference_runs", "recipes": {}}
    for name in args.recipes:
        result["recipes"][name] = run_recipe(name, RECIPES[name], Path(args.runs_dir),
                                             args.model, extra, args.resume, args.seeds)
    result["machine"] = machine(load_start)
    emit(result, args.output)


if __name__ == "__main__":
    main()
