"""Teacher vs ensemble of 3 vs a 3-layer student distilled with and without unlabeled text.

    SENTITUNE_DATA_DIR=../shared/data python benchmarks/distill.py --datasets sst2 imdb \
        --runs-dir runs/distill --resume --output benchmarks/results/distill-minilm-cpu.json

Per dataset, on CPU-sized recipes of the bundled MiniLM (6 layers):
- teachers: the shipped preset with seeds 42, 43, 44 (sst2-minilm: 2,000 SST-2 sentences;
  imdb-minilm: 1,000 / 200 IMDb reviews at 256 tokens);
- ensemble: the three teachers' mean probabilities (`sentitune.inference.ensemble`);
- students, taught by the ensemble, keeping 3 of the teacher's layers (teacher:3,
  initialised from the seed-42 teacher): on the labelled rows alone, and with unlabeled
  texts (SST-2: 20,000 training sentences the teachers never saw, labels dropped; IMDb:
  2,000 of the 50,000 unsup reviews);
- a baseline: the same 3-layer model fine-tuned on the hard labels alone (no teacher).

Scored on SST-2 dev (872 sentences, which is also every run's validation set: it picked
the best epoch and the temperature, so all rows are equally optimistic) and on 1,000
seeded IMDb test reviews no run saw: accuracy, and accuracy on the negation and contrast
slices. Inference texts/s of the seed-42 teacher and the unlabeled-text student, torch
fp32 and ONNX int8, measured side by side in this process on the same (up to 500) texts. Every run
is kept under --runs-dir and reused with --resume (training checkpoints every 10 minutes).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from common import add_run_flags, emit, machine

SEEDS = (42, 43, 44)
RECIPES = {
    "sst2": {"preset": "sst2-minilm", "unlabeled": 20000, "eval_texts": None},
    "imdb": {"preset": "imdb-minilm", "unlabeled": 2000, "eval_texts": 1000},
}
SPEED_TEXTS = 500
STUDENT_LR = 1e-4  # a 3-layer model takes a higher rate, as MiniLM did over BERT-base's 2e-5


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def trained(runs: Path, name: str, resume: bool, make) -> Path:
    """`make(out, resume)` trains into runs/name unless a finished run is there."""
    from sentitune.run import Run

    out = runs / name
    if (out / "metrics.json").is_file():
        Run.open(out)
        log("reusing", out)
        return out
    started = time.perf_counter()
    make(out, resume)
    log("trained", out, f"{time.perf_counter() - started:.0f} s")
    return out


def sst2_unlabeled(runs: Path, teacher, n: int, seed: int) -> Path:
    """SST-2 training sentences no teacher trained on, without their labels, as a .txt."""
    from sentitune.dataset.sources import read_source

    splits = teacher.rebuilt_splits()
    seen = set(splits.train["text"]) | set(splits.validation["text"])
    frames, _, _ = read_source("sst2")
    texts = [t for t in dict.fromkeys(frames["train"]["text"]) if t not in seen]
    # Whole sentences, not the short phrases GLUE's training split also holds.
    texts = [t for t in texts if len(t.split()) >= 8]
    picked = np.random.default_rng(seed).choice(len(texts), n, replace=False)
    path = runs / "sst2-unlabeled.txt"
    path.write_text("\n".join(texts[i] for i in np.sort(picked)) + "\n", encoding="utf-8")
    return path


def eval_rows(dataset: str, n: int | None, seed: int = 0):
    from sentitune.dataset import load_eval_split
    from sentitune.dataset.labels import BINARY_NAMES

    split = "validation" if dataset == "sst2" else "test"
    frame, _ = load_eval_split(dataset, split, BINARY_NAMES, "binary")
    if n is not None and n < len(frame):
        frame = frame.sample(n, random_state=seed).reset_index(drop=True)
    return list(frame["text"]), np.asarray(frame["label"], dtype=int), split


def scores(probs: np.ndarray, y: np.ndarray, slices: list[list[str]]) -> dict:
    right = probs.argmax(1) == y
    found = {"accuracy": round(float(right.mean()), 4)}
    for name in ("negation", "contrast"):
        rows = np.array([name in s for s in slices])
        found[name] = {"accuracy": round(float(right[rows].mean()), 4), "n": int(rows.sum())}
    return found


def speed(run_dir: Path, texts: list[str]) -> dict:
    """texts/s of torch fp32 and ONNX int8 on `texts` (after a warm-up)."""
    from sentitune.exporting.run_export import export
    from sentitune.inference.classifier import Classifier

    if not (run_dir / "onnx" / "model.int8.onnx").is_file():
        export(run_dir, quantize="int8")
    found = {}
    for backend in ("torch", "onnx-int8"):
        clf = Classifier.from_pretrained(run_dir, backend=backend, device="cpu")
        clf.predict(texts[:64])
        started = time.perf_counter()
        clf.predict(texts)
        found[backend] = round(len(texts) / (time.perf_counter() - started), 1)
    return found


def run_dataset(name: str, runs: Path, resume: bool) -> dict:
    import sentitune
    from sentitune.config import load_preset
    from sentitune.distillation import distill
    from sentitune.evaluation.slices import assign_slices
    from sentitune.inference.classifier import Classifier
    from sentitune.inference.ensemble import mean_probability_logits
    from sentitune.metrics import probabilities
    from sentitune.run import Run

    recipe = RECIPES[name]
    preset = load_preset(recipe["preset"])
    teachers = [trained(runs, f"{name}-teacher-{seed}", resume,
                        lambda out, r, seed=seed: sentitune.train(
                            preset, out, resume=r, overwrite=not r, progress=False, seed=seed,
                            checkpoint_every="10m"))
                for seed in SEEDS]
    if name == "sst2":
        unlabeled = sst2_unlabeled(runs, Run.open(teachers[0]), recipe["unlabeled"], 0)
        unlabeled_settings = {"unlabeled": str(unlabeled)}
    else:
        unlabeled_settings = {"unlabeled": "imdb", "unlabeled_samples": recipe["unlabeled"]}
    student = {"student": "teacher:3", "learning_rate": STUDENT_LR, "checkpoint_every": "10m",
               "progress": False}
    students = {
        "student_labelled_only": trained(runs, f"{name}-student", resume,
                                         lambda out, r: distill(teachers, out, resume=r,
                                                                overwrite=not r, **student)),
        "student_with_unlabeled": trained(runs, f"{name}-student-unlabeled", resume,
                                          lambda out, r: distill(teachers, out, resume=r,
                                                                 overwrite=not r,
                                                                 **unlabeled_settings,
                                                                 **student)),
    }
    # No teacher: the same 3-layer start fine-tuned on the hard labels (alpha 0 keeps only
    # the cross-entropy term, so the teachers' answers play no part).
    students["student_no_teacher"] = trained(
        runs, f"{name}-student-hard-labels", resume,
        lambda out, r: distill(teachers[0], out, resume=r, overwrite=not r, alpha=0.0,
                               **student))

    texts, y, split = eval_rows(name, recipe["eval_texts"])
    slices = assign_slices(texts)
    rows: dict[str, dict] = {}
    member_logits = []
    for seed, run_dir in zip(SEEDS, teachers, strict=True):
        logits, _ = Classifier.from_pretrained(run_dir, device="cpu").logits(texts)
        member_logits.append(logits)
        rows[f"teacher_{seed}"] = scores(probabilities(logits.astype(np.float64), "binary"),
                                         y, slices)
    ensemble = probabilities(mean_probability_logits(member_logits, "binary"), "binary")
    rows["ensemble_of_3"] = scores(ensemble, y, slices)
    for key, run_dir in students.items():
        probs = Classifier.from_pretrained(run_dir, device="cpu").predict_proba(texts)
        rows[key] = scores(probs, y, slices) | {
            "unlabeled_rows": Run.open(run_dir).facts["distillation"]["unlabeled_rows"]}
    best_member = max(rows[f"teacher_{s}"]["accuracy"] for s in SEEDS)
    teacher = rows["teacher_42"]["accuracy"]
    speeds = {"teacher_42 (6 layers)": speed(teachers[0], texts[:SPEED_TEXTS]),
              "student_with_unlabeled (3 layers)": speed(students["student_with_unlabeled"],
                                                          texts[:SPEED_TEXTS])}
    (t_speed, s_speed) = speeds.values()
    return {
        "preset": recipe["preset"],
        "evaluated_on": f"{name} {split}, {len(texts)} texts",
        "results": rows,
        "student_runs": {k: str(v) for k, v in students.items()},
        "unlabeled": unlabeled_settings,
        "texts_per_s": speeds,
        "speed_texts": min(SPEED_TEXTS, len(texts)),
        "student_speedup_torch": round(s_speed["torch"] / t_speed["torch"], 2),
        "student_speedup_onnx_int8": round(s_speed["onnx-int8"] / t_speed["onnx-int8"], 2),
        "best_student_minus_teacher_42": round(max(
            rows[k]["accuracy"] for k in ("student_labelled_only", "student_with_unlabeled"))
            - teacher, 4),
        "ensemble_minus_best_member": round(rows["ensemble_of_3"]["accuracy"] - best_member, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    add_run_flags(parser, "runs/distill")
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runs = Path(args.runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "distill", "goals": {
        "student": "at least 1.8x the teacher's texts/s within 1 point of its accuracy",
        "ensemble": "at least 1 point above its best member"}, "datasets": {}}
    for name in args.datasets:
        result["datasets"][name] = run_dataset(name, runs, args.resume)
        log(name, result["datasets"][name]["results"])
    result["machine"] = machine(load_start)
    emit(result, args.output)


if __name__ == "__main__":
    main()
