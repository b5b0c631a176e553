"""Teacher recipes: can the bundled MiniLM reach SST-2 dev >= 0.91 (MiniLM-L6-H384's published
91.5), and does augmentation make it more robust?

    nohup flock /work/jobs/cpu.lock python benchmarks/teacher_recipes.py \
        --baseline runs/sst2-minilm-full --runs-dir runs/teachers --resume \
        --output benchmarks/results/teacher_recipes-minilm-cpu.json > teachers.log 2>&1 &

Each arm is the sst2-minilm-full preset (all 67,349 phrases, 3 epochs, batch 32, max length
64) with a few settings changed, trained once (seed 42) through reference_runs.run_recipe:

    lr1e-4-ld0.9      learning rate 1e-4 with layer-wise decay 0.9: small models such as
                      MiniLM-L6 are usually fine-tuned above BERT-base's 2e-5..5e-5, and the
                      decay keeps the lower layers near their pretrained values (ELECTRA)
    lr1e-4-ld0.9-aug  the same plus one augmented copy per phrase with train's label-keeping
                      methods (identity swaps, masking): the issue's robustness question
    frames            the preset itself plus one copy per phrase with identity swaps inside
                      a rule-labelled sentence frame (negating, questioning, affirming, or
                      naming an identity: dataset.augment.FRAMES); the only change from the
                      baseline, so its behavioural rate against the baseline's answers the
                      issue's goal of at most half
    plain             the preset unchanged, so every arm trained at several seeds meets the
                      plain recipe at the same seeds; at the baseline's own seed the plain
                      arm is the baseline run, not trained again
    imdb-first        the preset started from the model of an imdb-minilm-intermediate run
                      (one epoch on IMDb's 22,500 training reviews, their last 128 tokens)
                      instead of from the bundled checkpoint: intermediate-task training
                      (STILTs, Phang et al. 2018) on the same task in a related domain;
                      SST-2's sentences come from film reviews.
                      The intermediate run is trained once, at the first seed, and shared by
                      every seed of the arm, as a user shares one checkpoint
    imdb-first-frames frames started from that intermediate run: both at once

The baseline is the existing sst2-minilm-full run (learning rate 5e-5, no decay), scored, not
retrained. --model, --train-samples and --epochs shrink the arms (the tests' tiny mode; recorded
in the JSON); --seeds trains each arm at several seeds. Every row has dev accuracy (the
same 872 sentences that chose its best epoch: every row is equally optimistic) and the
behavioural suite's mean failure rate. The JSON is rewritten after every arm; --resume
reuses finished arms and continues interrupted ones. With the plain arm and more than one seed,
"over_seeds" gives each arm's means and its behavioural rate against the plain recipe's, both
on the seeds' means and seed by seed: one plain run is a noisy yardstick.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from common import add_run_flags, emit, machine
from reference_runs import RECIPES, run_recipe
from students import scored

# Identity swaps inside rule-labelled frames: the robust preset's augmentation.
FRAMES = {"augment": 1, "augment_methods": ("identity", "frames")}
ARMS = {
    "lr1e-4-ld0.9": {"learning_rate": 1e-4, "layer_decay": 0.9},
    "lr1e-4-ld0.9-aug": {"learning_rate": 1e-4, "layer_decay": 0.9, "augment": 1},
    "frames": FRAMES,
    "plain": {},
    "imdb-first": {},
    "imdb-first-frames": FRAMES,
}
# The intermediate run the FROM_INTERMEDIATE arms start from (its preset's comment says why 128
# tokens and one epoch).
INTERMEDIATE = {"preset": "imdb-minilm-intermediate", "overrides": {}, "seeds": [42],
                "test": False}
FROM_INTERMEDIATE = ("imdb-first", "imdb-first-frames")


RECIPE = RECIPES["sst2-full"]


def _ratio(rate: float, baseline: float) -> float | None:
    """An arm's behavioural failure rate as a share of the baseline's (the goal: <= 0.5)."""
    return round(rate / baseline, 3) if baseline else None


def over_seeds(by_arm: dict[str, dict[int, dict]]) -> dict:
    """Each arm's means over its seeds (by_arm: arm -> seed -> row), and its behavioural rate
    against the plain arm's, on the means and paired seed by seed (the same seed shares data
    order and initial head)."""
    plain = by_arm.get("plain", {})

    def rate(row: dict) -> float:
        return row["behavioural"]["mean_failure_rate"]

    out = {}
    for arm, rows in by_arm.items():
        if len(rows) < 2:
            continue
        found = {"seeds": sorted(rows),
                 "dev_accuracy_mean": round(statistics.mean(
                     r["dev_accuracy"] for r in rows.values()), 4),
                 "behavioural_mean": round(statistics.mean(map(rate, rows.values())), 4)}
        if arm != "plain" and len(plain) > 1:
            found["behavioural_over_plain_mean"] = _ratio(
                found["behavioural_mean"], statistics.mean(map(rate, plain.values())))
            found["behavioural_over_plain_same_seed"] = {
                seed: _ratio(rate(row), rate(plain[seed]))
                for seed, row in sorted(rows.items()) if seed in plain}
        out[arm] = found
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="runs/sst2-minilm-full",
                        help="the existing sst2-minilm-full run to compare against")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--model", help="replace the bundled MiniLM (e.g. a tiny test model)")
    parser.add_argument("--train-samples", type=int, help="training subset (default: all)")
    parser.add_argument("--epochs", type=float, help="override the preset's 3 epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=RECIPE["seeds"],
                        help="train each arm at these seeds (an arm past the first seed is "
                        "reported as ARM-seedN)")
    add_run_flags(parser, "runs/teachers")
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentitune.run import Run

    runs = Path(args.runs_dir)
    shrink = {k: v for k, v in (("train_samples", args.train_samples),
                                ("epochs", args.epochs)) if v is not None}
    result = {"benchmark": "teacher_recipes", "preset": RECIPE["preset"],
              "model": args.model or "minilm", "shrunk_to": shrink or "none",
              "baseline": scored(Path(args.baseline)), "arms": {}}
    baseline = Run.open(args.baseline)
    baseline_seed = baseline.config.training.seed

    by_arm: dict[str, dict[int, dict]] = {}  # the same rows as result["arms"], for over_seeds

    def add(arm: str, seed: int, row: dict) -> None:
        by_arm.setdefault(arm, {})[seed] = row
        result["arms"][arm if seed == args.seeds[0] else f"{arm}-seed{seed}"] = row

    for arm in args.arms:
        seeds, model, settings = args.seeds, args.model, ARMS[arm]
        if arm in FROM_INTERMEDIATE:
            if "intermediate" not in result:
                # A shrunk (test) run shrinks the intermediate run too; its epochs stay at one.
                stage = run_recipe("imdb128", INTERMEDIATE, runs, args.model,
                                   {k: v for k, v in shrink.items() if k != "epochs"},
                                   args.resume, seeds=args.seeds[:1])
                result["intermediate"] = stage["runs"][0] | {
                    "preset": INTERMEDIATE["preset"], "overrides": stage["overrides"]}
            model = str(Run.open(result["intermediate"]["run"]).model_dir)
            settings = ARMS[arm] | {"model": model}
        if arm == "plain" and baseline_seed in seeds:
            seeds = [seed for seed in seeds if seed != baseline_seed]
            add(arm, baseline_seed, result["baseline"] | {
                "settings": ARMS[arm], "seed": baseline_seed, "history": baseline.history()})
        found = run_recipe(arm, RECIPE, runs, model, ARMS[arm] | shrink, args.resume,
                           seeds=seeds) if seeds else {"runs": []}
        for row in found["runs"]:
            add(arm, row["seed"], scored(Path(row["run"])) | {
                "settings": settings, "seed": row["seed"], "history": row["history"]})
        result["summary"] = {
            name: {"dev_accuracy": a["dev_accuracy"],
                   "minus_baseline": round(a["dev_accuracy"]
                                           - result["baseline"]["dev_accuracy"], 4),
                   "behavioural_mean_failure_rate": a["behavioural"]["mean_failure_rate"],
                   "behavioural_over_baseline": _ratio(
                       a["behavioural"]["mean_failure_rate"],
                       result["baseline"]["behavioural"]["mean_failure_rate"])}
            for name, a in result["arms"].items()}
        result["over_seeds"] = over_seeds(by_arm)
        result["machine"] = machine(load_start)
        emit(result, args.output)


if __name__ == "__main__":
    main()
