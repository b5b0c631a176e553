"""Students of a full-data teacher: 3 and 2 layers, with and without augmentation.

    nohup flock /work/jobs/cpu.lock python benchmarks/students.py \
        --teacher runs/sst2-minilm-full --runs-dir runs/students --resume \
        --output benchmarks/results/students-minilm-cpu.json > students.log 2>&1 &

Each arm is `sentitune distill TEACHER --config PRESET`. For an SST-2 teacher (the default
--dataset sst2): sst2-minilm-student3, -student2 and their -aug variants (one augmented copy
per training text, labelled by the teacher), seed 42 first, then seeds 43 and 44 of the
3-layer student with and without augmentation, so the augmentation gain comes with its
spread; then the Patient KD arms (-pkd presets: layer matching, `--hidden-weight` 100, and
500 for student3-pkd500; the 3-layer one at seeds 43 and 44 too), then the -imdb arms
(67,349 IMDb sentences the teacher labels added to the transfer set) at seeds 42-44 and with
all 6 of the teacher's layers (student6-imdb), each against its plain arm. For an IMDb
teacher (--dataset imdb): imdb-minilm-student3, -student2 and their -aug variants, at the
teacher's seed. A student keeps its teacher's training settings that its preset leaves
alone, augmentation included: the students of a teacher trained with `sst2-minilm-robust`
have its framed copies in their transfer set, labelled by it. Every arm is scored on the
teacher's validation set (SST-2 dev: 872 sentences; IMDb: the teacher's 2,500-review
hold-out, the students keep its seed), which also picked each run's best epoch and
temperature, teacher included, so every row is equally optimistic, and on the bundled
behavioural suite (mean failure rate over its tests).
--train-samples and --epochs shrink the arms to a CPU budget (recorded in the JSON);
--budget-min stops starting arms after that many minutes. The JSON is rewritten after every
arm; --resume reuses finished arms and continues interrupted ones from their checkpoints.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from common import add_run_flags, emit, machine

# (arm, preset, seed; None: the teacher's) for a teacher of each dataset (--dataset), in the
# order they run: the four seed-42 arms first.
ARMS = {"sst2": [
    ("student3", "sst2-minilm-student3", 42),
    ("student3-aug", "sst2-minilm-student3-aug", 42),
    ("student2", "sst2-minilm-student2", 42),
    ("student2-aug", "sst2-minilm-student2-aug", 42),
    *[(f"student3{aug}-seed{seed}", f"sst2-minilm-student3{aug}", seed)
      for seed in (43, 44) for aug in ("", "-aug")],
    # Patient KD (layer matching), weight 100 as the presets, then 500, PKD's other choice.
    ("student3-pkd", "sst2-minilm-student3-pkd", 42),
    ("student3-pkd500", "sst2-minilm-student3-pkd", 42),
    ("student2-pkd", "sst2-minilm-student2-pkd", 42),
    *[(f"student3-pkd-seed{seed}", "sst2-minilm-student3-pkd", seed) for seed in (43, 44)],
    # A transfer set grown with IMDb sentences the teacher labels.
    *[(f"student3-imdb{s}", "sst2-minilm-student3-imdb", seed)
      for s, seed in (("", 42), ("-seed43", 43), ("-seed44", 44))],
    # All 6 of the teacher's layers on that transfer set: can more data lift the teacher?
    ("student6-imdb", "sst2-minilm-student3-imdb", 42),
],
    # The teacher's seed (None): IMDb has no validation split and the hold-out is drawn with
    # the seed, so a student at another seed would be scored on other reviews than its teacher.
    "imdb": [(arm, f"imdb-minilm-{arm}", None)
             for arm in ("student3", "student3-aug", "student2", "student2-aug")],
}
# Settings an arm adds to its preset.
ARM_SETTINGS = {"student3-pkd500": {"hidden_weight": 500.0},
                "student6-imdb": {"student": "teacher:6"}}
SEEDS = ("", "-seed43", "-seed44")  # the suffixes of seeds 42, 43 and 44


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def behaviour(run_dir: Path) -> dict:
    """The behavioural suite's failure rates for a run (mean over tests, and pooled)."""
    from sentitune.evaluation.behavioral import run_behavioral_tests
    from sentitune.inference.classifier import Classifier

    clf = Classifier.from_pretrained(run_dir, device="cpu")
    found = run_behavioral_tests(clf.predict_proba, clf.labels, max_examples=0)
    rates = {t["name"]: round(t["failure_rate"], 4) for t in found["tests"]}
    return {"mean_failure_rate": round(statistics.mean(rates.values()), 4),
            "pooled_failure_rate": round(found["overall_failure_rate"], 4), "tests": rates}


def scored(run_dir: Path) -> dict:
    from sentitune.run import Run

    run = Run.open(run_dir)
    v = run.metrics["validation"]
    taught = run.facts.get("distillation", {})
    return {"run": str(run_dir), "seed": run.config.training.seed,
            "dev_accuracy": round(v["accuracy"], 4),
            "dev_f1_macro": round(v["f1_macro"], 4),
            "train_runtime_s": round(run.metrics.get("train_runtime_s", 0.0), 1),
            "best_epoch": run.metrics["best_epoch"],
            "labelled_rows": taught.get("labelled_rows", run.facts["rows"]["train"]),
            "augmented_rows": taught.get("augmented_rows", run.facts.get(
                "augmentation", {}).get("copies_added", 0)),  # distill's, else train's
            "hidden_weight": taught.get("hidden_weight", 0.0),
            "unlabeled_rows": taught.get("unlabeled_rows", 0),
            "behavioural": behaviour(run_dir)}


def summary(rows: dict, teacher: dict) -> dict:
    out = {}
    for arm in ("student3", "student2", "student3-imdb", "student6-imdb"):
        if arm in rows:
            out[f"{arm}_minus_teacher"] = round(
                rows[arm]["dev_accuracy"] - teacher["dev_accuracy"], 4)
    for variant in ("student3", "student3-aug", "student3-pkd", "student3-imdb"):
        found = [rows[f"{variant}{s}"]["dev_accuracy"] for s in SEEDS if f"{variant}{s}" in rows]
        if len(found) > 1:
            out[f"{variant}_over_seeds"] = {
                "seeds": len(found), "mean": round(statistics.mean(found), 4),
                "mean_minus_teacher": round(statistics.mean(found) - teacher["dev_accuracy"], 4)}
    for name, variant in (("augmentation_gain_student3", "student3-aug"),
                          ("layer_matching_gain_student3", "student3-pkd"),
                          ("transfer_set_gain_student3", "student3-imdb")):
        gains = [rows[f"{variant}{s}"]["dev_accuracy"] - rows[f"student3{s}"]["dev_accuracy"]
                 for s in SEEDS if f"{variant}{s}" in rows and f"student3{s}" in rows]
        if gains:
            out[name] = {
                "per_seed": [round(g, 4) for g in gains], "mean": round(statistics.mean(gains), 4),
                "stdev": round(statistics.stdev(gains), 4) if len(gains) > 1 else None}
    for arm in ("student3-pkd500", "student2-pkd"):
        plain = arm.split("-")[0]
        if arm in rows and plain in rows:
            out[f"layer_matching_gain_{arm}"] = round(
                rows[arm]["dev_accuracy"] - rows[plain]["dev_accuracy"], 4)
    base = teacher["behavioural"]["mean_failure_rate"]
    out["behavioural_mean_failure_rate"] = {"teacher": base, **{
        arm: row["behavioural"]["mean_failure_rate"] for arm, row in rows.items()}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="runs/sst2-minilm-full")
    parser.add_argument("--dataset", choices=list(ARMS), default="sst2",
                        help="the teacher's dataset: its arms use the DATASET-minilm-student* "
                        "presets")
    parser.add_argument("--arms", nargs="+", choices=sorted({a for arms in ARMS.values()
                                                             for a, _, _ in arms}),
                        help="arms to train (default: all of --dataset's; finished arms in "
                        "--runs-dir are reported too)")
    parser.add_argument("--train-samples", type=int, help="transfer-set subset (default: all)")
    parser.add_argument("--epochs", type=float, help="override the presets' epochs")
    parser.add_argument("--budget-min", type=float, default=None,
                        help="start no arm after this many minutes")
    add_run_flags(parser, "runs/students")
    args = parser.parse_args()
    arms = ARMS[args.dataset]
    names = [a for a, _, _ in arms]
    others = sorted(set(args.arms or ()) - set(names))
    if others:
        parser.error(f"{', '.join(others)}: not an arm of --dataset {args.dataset}; its arms "
                     f"are {', '.join(names)}")
    chosen = args.arms or names
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentitune.distillation import distill

    started = time.perf_counter()
    runs = Path(args.runs_dir)
    shrink = {k: v for k, v in (("train_samples", args.train_samples),
                                ("epochs", args.epochs)) if v is not None}
    result = {"benchmark": "students", "teacher": args.teacher, "dataset": args.dataset,
              "shrunk_to": shrink or "none",
              "teacher_scores": scored(Path(args.teacher)), "arms": {}}
    for arm, preset, seed in arms:
        out = runs / arm
        if arm not in chosen and not (out / "metrics.json").is_file():
            continue
        if not (out / "metrics.json").is_file():
            if args.budget_min is not None and time.perf_counter() - started > args.budget_min * 60:
                log("budget spent; not starting", arm)
                continue
            log("distilling", arm)
            t0 = time.perf_counter()
            seeded = {} if seed is None else {"seed": seed}
            distill(args.teacher, out, config=preset, resume=args.resume,
                    overwrite=not args.resume, progress=False, checkpoint_every="5m",
                    **seeded, **ARM_SETTINGS.get(arm, {}), **shrink)
            log("done", arm, f"{time.perf_counter() - t0:.0f} s")
        result["arms"][arm] = scored(out) | {"preset": preset}
        result["summary"] = summary(result["arms"], result["teacher_scores"])
        result["machine"] = machine(load_start)
        emit(result, args.output)


if __name__ == "__main__":
    main()
