"""compare: one recipe per method, verified; real measurements in three reports."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import assert_one_line_error, run_cli, tiny_config

from sentitune.cli import main
from sentitune.comparison import compare_runs, plan_runs, tradeoffs
from sentitune.config import TrainingConfig
from sentitune.errors import SentituneError
from sentitune.training import train

SEEDS = (7, 8)
RATES = {"full": 1e-2, "lora": 2e-2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert, sentiment_csv) -> dict[str, Path]:
    """Full and LoRA on two seeds as compare plans them, trained here in-process."""
    out = tmp_path_factory.mktemp("runs")
    plans = plan_runs(tiny_config(tiny_bert, sentiment_csv, epochs=1.0), ("full", "lora"), SEEDS,
                      RATES)
    return {name: train(config, out / name, progress=False).run_dir
            for name, config in plans.items()}


@pytest.fixture(scope="module")
def compared(runs, tmp_path_factory) -> Path:
    """`sentitune compare --runs ...` on those runs."""
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", "--runs", *map(str, runs.values()), "--output", str(out),
                 "--quiet"]) == 0
    return out


def test_plan_changes_only_method_seed_and_their_settings(tiny_bert, sentiment_csv):
    base = tiny_config(tiny_bert, sentiment_csv, lora_r=4, lora_targets="query")
    plans = plan_runs(base, ("full", "lora"), (1, 2), RATES)
    assert list(plans) == ["full-seed1", "lora-seed1", "full-seed2", "lora-seed2"]
    defaults = TrainingConfig()
    for name, config in plans.items():
        method, seed = name.split("-seed")
        assert config.data == base.data and config.model == base.model
        t = config.training
        assert (t.method, t.seed, t.learning_rate) == (method, int(seed), RATES[method])
        lora = (t.lora_r, t.lora_targets)
        assert lora == ((4, "query") if method == "lora"
                        else (defaults.lora_r, defaults.lora_targets))
        assert t.batch_size == base.training.batch_size and t.epochs == base.training.epochs


def test_report_numbers_come_from_the_runs(compared, runs):
    report = json.loads((compared / "compare.json").read_text())
    assert list(report["variants"]) == ["full", "lora"]
    for method, m in report["variants"].items():
        metrics = [json.loads((runs[f"{method}-seed{s}"] / "metrics.json").read_text())
                   for s in SEEDS]
        accuracy = [x["validation"]["accuracy"] for x in metrics]
        assert m["seeds"] == list(SEEDS)
        assert m["val_accuracy"]["values"] == pytest.approx(accuracy)
        assert m["val_accuracy"]["mean"] == pytest.approx(np.mean(accuracy), abs=1e-6)
        assert m["val_accuracy"]["std"] == pytest.approx(np.std(accuracy, ddof=1), abs=1e-6)
        # The runs' own metric, not the positive class's F1 (issue 27).
        assert m["val_metric"] == "f1_macro"
        assert m["val_score"]["values"] == pytest.approx(
            [x["validation"]["f1_macro"] for x in metrics])
        assert m["trainable_params"] == metrics[0]["trainable_params"]
        assert m["settings"]["learning_rate"] == RATES[method]
        assert all(v > 0 for v in m["train_runtime_s"]["values"])
        for batch in ("batch_1", "batch_32"):
            assert all(v > 0 for v in m["latency_ms_per_text"][batch]["values"])
        assert m["latency_model"] == "model/ (merged)"
    full, lora = report["variants"]["full"], report["variants"]["lora"]
    assert full["trainable_pct"] == 100 and 0 < lora["trainable_pct"] < 1
    assert (full["checkpoint"], lora["checkpoint"]) == ("model/", "adapter/")
    assert lora["checkpoint_mb"] < full["checkpoint_mb"] / 50
    # Merged, a LoRA model is the full architecture again: the same size on disk.
    assert lora["merged_model_mb"] == pytest.approx(full["checkpoint_mb"], rel=0.01)

    shared = report["shared_settings"]
    assert (shared["max_length"], shared["batch_size"], shared["device"]) == (32, 16, "cpu")
    assert not {"method", "seed", "learning_rate", "lora_r"} & set(shared)
    assert set(report["data_fingerprints"]) == {"7", "8"}
    assert report["data_fingerprints"]["7"] != report["data_fingerprints"]["8"]


def test_markdown_and_figure(compared):
    import matplotlib.image

    report = json.loads((compared / "compare.json").read_text())
    text = (compared / "compare.md").read_text()
    lora = report["variants"]["lora"]
    assert "| full | 0.01 | 1,011,426 (100.00%)" in text
    assert f"| lora | 0.02 | {lora['trainable_params']:,} ({lora['trainable_pct']:.2f}%)" in text
    assert report["tradeoffs"] in text
    assert f"{lora['trainable_pct']:.2f}% of the parameters" in report["tradeoffs"]
    assert "- max_length: 32" in text and "- lora: learning_rate 0.02, lora_r 8" in text
    image = matplotlib.image.imread(compared / "compare.png")
    assert image.shape[0] > 600 and image.shape[1] > 1200


def _method_stats(accuracy: list[float], method: str = "lora", not_learned=()) -> dict:
    def stats(values):
        return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)),
                "n": len(values)}

    return {"model": "minilm", "method": method, "trainable_pct": 0.5, "trainable_params": 5,
            "total_params": 1000,
            "peak_memory_mb": stats([100, 100]), "train_samples_per_s": stats([10, 10]),
            "val_accuracy": stats(accuracy), "val_score": stats(accuracy),
            "val_metric": "f1_macro", "not_learned": list(not_learned),
            "seeds": list(range(len(accuracy))), "checkpoint_mb": 1.0, "checkpoint": "adapter/",
            "latency_model": "model/ (merged)",
            "latency_ms_per_text": {"batch_1": stats([2, 2]), "batch_32": stats([1, 1])}}


def test_tradeoffs_weigh_the_accuracy_gap_against_seed_noise():
    full = _method_stats([0.90, 0.91, 0.89], "full")
    close = tradeoffs({"variants": {"full": full, "lora": _method_stats([0.89, 0.91, 0.90])}})
    apart = tradeoffs({"variants": {"full": full, "lora": _method_stats([0.80, 0.81, 0.79])}})
    assert "do not separate the two" in close
    assert "more than the seed-to-seed noise" in apart and "-10.0 points" in apart


def test_arms_that_learned_nothing_are_not_called_equal():
    """Two arms answering 'positive' everywhere once read as a tie within seed noise."""
    said = "the model predicts 'positive' for 100% of validation rows"
    full = _method_stats([0.509, 0.509], "full", [said, said])
    text = tradeoffs({"variants": {"full": full, "lora": _method_stats([0.509, 0.509],
                                                                       not_learned=[said])}})
    assert "do not separate" not in text and "No score comparison" in text
    assert f"LoRA has not learned in 1 of 2 seeds ({said})" in text
    assert "full fine-tuning has not learned in 2 of 2 seeds" in text


def _edited_copy(run: Path, target: Path, **changes) -> Path:
    copy = shutil.copytree(run, target)
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    for key, value in changes.items():
        section = next((s for s in ("data", "model", "training") if key in saved[s]), None)
        (saved[section] if section else saved)[key] = value
    (copy / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    return copy


def test_mismatched_runs_are_refused(runs, tmp_path):
    full7, full8, lora7, lora8 = (runs[f"{m}-seed{s}"] for m in ("full", "lora") for s in SEEDS)
    batch = _edited_copy(lora7, tmp_path / "batch", batch_size=8)
    epochs = _edited_copy(lora7, tmp_path / "epochs", epochs=3.0)
    rate = _edited_copy(lora8, tmp_path / "rate", learning_rate=0.5)
    rows = _edited_copy(lora7, tmp_path / "rows", data_fingerprint="0123456789abcdef")
    cases = [
        ([full7, full8, batch, lora8], "differ in batch_size (16 vs 8)"),
        ([full7, full8, lora7, rate], "the lora runs differ in learning_rate"),
        ([full7, full8, lora7], "methods ran on different seeds (full: 7, 8; lora: 7)"),
        ([full7, full8, rows, lora8], "the seed-7 runs saw different rows"),
        ([full7, full8], "compare needs runs of two methods"),
        ([full7, full7, lora7], "are both full with seed 7"),
        ([full7, full8, epochs, lora8], "differ in epochs (1.0 vs 3.0)"),
    ]
    for run_dirs, message in cases:
        with pytest.raises(SentituneError, match=re.escape(message)):
            compare_runs(run_dirs, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_compare_trains_reuses_and_refuses_other_settings(capsys, tmp_path, tiny_bert,
                                                              sentiment_csv):
    out = tmp_path / "cmp"
    argv = ["compare", "--data", str(sentiment_csv), "--model", str(tiny_bert), "--seeds", "7",
            "--lr-full", "1e-2", "--lr-lora", "2e-2", "--epochs", "1", "--max-length", "32",
            "--batch-size", "16", "--warmup-ratio", "0", "--output", str(out)]
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0, stdout
    assert "[1/2] full-seed7: training (lr 0.01)" in stdout
    assert "[2/2] lora-seed7: training (lr 0.02)" in stdout
    for name in ("compare.json", "compare.md", "compare.png"):
        assert (out / name).is_file()
    report = json.loads((out / "compare.json").read_text())
    assert report["variants"]["lora"]["runs"] == ["runs/lora-seed7"]
    # One tiny epoch may leave an arm unlearned: then no score comparison, else a one-seed one.
    unlearned = any(report["variants"][m]["not_learned"] for m in ("full", "lora"))
    assert ("No score comparison" if unlearned else "from a single seed") in report["tradeoffs"]
    # Each run trained in a fresh process, so its peak RSS increase is its own. On a model
    # this tiny, LoRA's saving (a few hundred kB of optimizer state) is below allocator noise,
    # so only "measured and carried over" is checked here; the saving itself is measured on
    # full-size models in benchmarks/gpu_recipes.py.
    for method in ("full", "lora"):
        run_metrics = json.loads((out / "runs" / f"{method}-seed7" / "metrics.json").read_text())
        assert report["variants"][method]["peak_memory_mb"]["mean"] == \
            run_metrics["peak_memory_mb"] > 0
    for run in ("full-seed7", "lora-seed7"):
        saved = yaml.safe_load((out / "runs" / run / "config.yaml").read_text())
        assert saved["training"]["method"] == run.split("-")[0]
    stamp = (out / "runs" / "lora-seed7" / "metrics.json").stat().st_mtime_ns

    code, stdout, _ = run_cli(capsys, *argv)  # finished runs are reused, not retrained
    assert code == 0 and "training (lr" not in stdout
    assert stdout.count("reusing the finished run") == 2
    assert (out / "runs" / "lora-seed7" / "metrics.json").stat().st_mtime_ns == stamp
    code, _, err = run_cli(capsys, *argv[:-4], "--batch-size", "8", "--output", str(out))
    assert_one_line_error(code, err, "exists with other settings")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "full"], "--methods needs two different methods"),
        (["--methods", "full,qlora"], "unknown method(s) qlora"),
        (["--seeds", "4x"], "--seeds must be comma-separated integers"),
        (["--seeds", "4,4"], "no repeats"),
    ],
)
def test_cli_compare_bad_options(capsys, tmp_path, sentiment_csv, extra, message):
    code, _, err = run_cli(capsys, "compare", "--data", str(sentiment_csv), "--output",
                           str(tmp_path / "out"), *extra)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "out").exists()


def test_cli_compare_runs_refuses_training_flags(capsys, tmp_path, runs):
    code, _, err = run_cli(capsys, "compare", "--runs", *map(str, runs.values()), "--data",
                           "sst2", "--batch-size", "8", "--output", str(tmp_path / "out"))
    assert_one_line_error(code, err, "drop --batch-size, --data")
    code, _, err = run_cli(capsys, "compare", "--runs", str(runs["full-seed7"]),
                           str(runs["full-seed8"]), "--output", str(tmp_path / "out"))
    assert_one_line_error(code, err, "compare needs runs of two methods")


# ----------------------------------------------------------------- comparing models


@pytest.fixture(scope="module")
def model_runs(tmp_path_factory, family_models, sentiment_csv) -> dict[str, Path]:
    """BERT and RoBERTa (each with its own tokenizer), full and LoRA, as compare plans them."""
    out = tmp_path_factory.mktemp("model-runs")
    models = [str(family_models["bert"]), str(family_models["roberta"])]
    plans = plan_runs(tiny_config(models[0], sentiment_csv, epochs=1.0), ("full", "lora"), (7,),
                      RATES, models)
    assert list(plans) == ["bert-full-seed7", "bert-lora-seed7", "roberta-full-seed7",
                           "roberta-lora-seed7"]
    return {name: train(config, out / name, progress=False).run_dir
            for name, config in plans.items()}


def test_models_crossed_with_methods_are_measured_side_by_side(model_runs, tmp_path):
    from sentitune.run import Run

    out = tmp_path / "cmp"
    report = compare_runs(list(model_runs.values()), out, onnx=True, progress=False).report
    assert report["compared"] == "models and methods"
    assert list(report["variants"]) == ["bert full", "bert lora", "roberta full", "roberta lora"]
    for name, m in report["variants"].items():
        run_dir = model_runs[name.replace(" ", "-") + "-seed7"]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert m["model_type"] == name.split()[0] and m["method"] == name.split()[1]
        assert m["model"] == Run.open(run_dir).config.model.model
        assert (m["total_params"], m["trainable_params"]) == (metrics["total_params"],
                                                              metrics["trainable_params"])
        # The report keeps 6 decimals (_stats); 0.5 passed exactly, 13/24 did not.
        assert m["val_accuracy"]["values"] == pytest.approx(
            [metrics["validation"]["accuracy"]], abs=5e-7)
        speeds = m["inference_texts_per_s_batch_32"]
        assert set(speeds) == {"torch", "onnx"} and all(s["mean"] > 0 for s in speeds.values())
        assert (run_dir / "onnx" / "model.onnx").is_file()  # --onnx exported it
    variants = report["variants"]
    # Each model kept its own tokenizer: BERT's WordPiece and RoBERTa's much smaller BPE.
    assert variants["roberta full"]["total_params"] < variants["bert full"]["total_params"]
    assert variants["roberta lora"]["trainable_pct"] < 100
    shared = report["shared_settings"]
    assert "model" not in shared and shared["max_length"] == 32
    text = report["tradeoffs"]
    assert "roberta full has 0.1M parameters against bert full's 1.0M" in text
    assert "roberta lora has 0.1M parameters against bert lora's 1.0M" in text
    assert "Most accurate: " in text and "smallest on disk: " in text
    assert "LoRA trained" in text  # bert lora against bert full: the method sentences
    md = (out / "compare.md").read_text()
    assert md.startswith("# bert full vs bert lora vs roberta full vs roberta lora on ")
    assert "| roberta lora | 0.02 |" in md and "onnx " in md


def test_model_runs_that_differ_beyond_model_and_method_are_refused(model_runs, runs, tmp_path):
    bert, roberta = model_runs["bert-full-seed7"], model_runs["roberta-full-seed7"]
    other_rate = _edited_copy(roberta, tmp_path / "rate", learning_rate=0.5)
    other_labels = shutil.copytree(roberta, tmp_path / "labels")
    # Other names for its two outputs (three labels on a 2-output model is a damaged run).
    (other_labels / "labels.json").write_text(json.dumps(
        {"task": "binary", "labels": ["bad", "good"]}))
    cases = [
        ([bert, other_rate], "the full runs differ in learning_rate"),
        ([bert, other_labels], "answer different questions"),
        ([bert, runs["full-seed8"]], "models ran on different seeds (bert: 7; "),
    ]
    for run_dirs, message in cases:
        with pytest.raises(SentituneError, match=re.escape(message)):
            compare_runs(run_dirs, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_compare_models_trains_each_with_its_own_tokenizer(capsys, tmp_path, family_models,
                                                               sentiment_csv):
    out = tmp_path / "cmp"
    models = f"{family_models['bert']},{family_models['albert']}"
    code, stdout, _ = run_cli(capsys, "compare", "--data", str(sentiment_csv), "--models", models,
                              "--seeds", "7", "--lr-full", "1e-2", "--epochs", "1",
                              "--max-length", "32", "--batch-size", "16", "--output", str(out))
    assert code == 0, stdout
    assert "[1/2] bert-full-seed7: training (lr 0.01)" in stdout
    assert "[2/2] albert-full-seed7: training (lr 0.01)" in stdout
    report = json.loads((out / "compare.json").read_text())
    assert report["compared"] == "models" and list(report["variants"]) == ["bert", "albert"]
    assert "albert has " in report["tradeoffs"]
    saved = {run: yaml.safe_load((out / "runs" / f"{run}-full-seed7" / "config.yaml").read_text())
             for run in ("bert", "albert")}
    assert saved["bert"]["model"].pop("model") != saved["albert"]["model"].pop("model")
    assert saved["bert"]["data"] == saved["albert"]["data"]
    assert saved["bert"]["training"] == saved["albert"]["training"]
    vocab = {run: json.loads((out / "runs" / f"{run}-full-seed7" / "model" / "config.json")
                             .read_text())["vocab_size"] for run in ("bert", "albert")}
    assert vocab["bert"] == 30522 and vocab["albert"] < 1000


def test_cli_compare_bad_models(capsys, tmp_path, sentiment_csv, tiny_bert):
    from transformers import ViTConfig

    vision = tmp_path / "vision-model"
    ViTConfig().save_pretrained(vision)
    cases = [
        ([f"{tiny_bert},robertta"], "unknown model 'robertta': not an alias (minilm, distilbert"),
        ([f"{tiny_bert},{vision}"], "is a vit model, which transformers cannot load as a "
                                    "sequence classifier"),
        ([f"{tiny_bert},{tiny_bert}"], "--models needs models named once each"),
        ([str(tiny_bert), "--methods", "full"], "--methods needs two different methods"),
        ([f"{tiny_bert},{vision}", "--model", "minilm"], "give --models (several) or --model"),
        ([f"{tiny_bert},minilm", "--max-length", "600"], "above the limit of model"),
    ]
    for extra, message in cases:
        code, _, err = run_cli(capsys, "compare", "--data", str(sentiment_csv), "--output",
                               str(tmp_path / "out"), "--models", *extra)
        assert_one_line_error(code, err, message)
        assert not (tmp_path / "out").exists()
