"""The benchmark scripts run (in their tiny modes), so they cannot rot between measurements."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from conftest import REPO, require_shared_data


def run_benchmark(script: str, out, *options: str) -> dict:
    """benchmarks/SCRIPT OPTIONS --output OUT, as a user runs it; its JSON result."""
    require_shared_data()
    env = os.environ | {"PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), str(REPO / "benchmarks"), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *options,
                    "--output", str(out)], check=True, env=env, capture_output=True, timeout=600)
    return json.loads(out.read_text())


def test_gpu_recipes_runs_every_arm_in_its_tiny_cpu_mode(tmp_path):
    result = run_benchmark(
        "gpu_recipes.py", tmp_path / "gpu_recipes.json", "--tiny", "--device", "cpu",
        "--models", "distilbert", "bert", "--batch-sizes", "4", "--steps", "1", "--warmup", "1",
        "--train-texts", "32", "--infer-texts", "8", "--infer-repeats", "1")
    assert result["weights"].startswith("random") and result["machine"]["cpu"]
    for name in ("distilbert", "bert"):
        entry = result["models"][name]
        arms = {(a["method"], a["precision"], a["padding"]) for a in entry["train"]}
        assert arms == {(m, p, pad) for m in ("full", "lora") for p in ("fp32", "bf16")
                        for pad in ("tutorial", "sentitune")}
        assert all(a["samples_per_s"] > 0 and a["peak_memory_mb"] is None
                   for a in entry["train"])
        shares = {a["padding"]: a["padding_share"] for a in entry["train"]}
        assert shares["tutorial"] > shares["sentitune"]  # SST-2 sentences are short
        params = entry["parameters"]
        assert params["lora"]["trainable"] < params["full"]["trainable"] == params["full"][
            "total"]
        assert {(a["batch_size"], a["precision"]) for a in entry["inference"]} == {
            (1, "fp32"), (1, "bf16"), (64, "fp32"), (64, "bf16")}


def test_architectures_runs_every_family_in_its_tiny_mode(tmp_path):
    result = run_benchmark(
        "architectures.py", tmp_path / "architectures.json", "--tiny", "--device", "cpu",
        "--train-steps", "1", "--texts", "16", "--rounds", "1")
    assert result["device"] == "cpu" and result["machine"]["cpu"]
    assert result["sizes"].startswith("tiny")
    types = {name: entry["model_type"] for name, entry in result["models"].items()}
    assert types == {"distilbert-base": "distilbert", "bert-base": "bert",
                     "roberta-base": "roberta", "albert-base-v2": "albert",
                     "minilm-l6 (bundled)": "bert"}
    for entry in result["models"].values():
        assert entry["total_params"] > 0 and entry["size_mb"] > 0
        assert entry["best_train_samples_per_s"] > 0 and entry["best_inference_texts_per_s"] > 0
    assert result["models"]["bert-base"]["vs_bert_base"]["params"] == 1.0
    assert result["machine"]["load_average_start"] and result["machine"]["load_average_end"]


def test_frontier_measures_every_engine_and_the_utilisation(tmp_path, tiny_run_dir):
    import shutil

    copy, other = tmp_path / "tiny-copy", tmp_path / "other"  # export writes into a run
    shutil.copytree(tiny_run_dir, copy)
    shutil.copytree(tiny_run_dir, other)
    result = run_benchmark("frontier.py", tmp_path / "frontier.json", str(copy), "--ensemble",
                           str(copy), str(other), "--texts", "32", "--plot",
                           str(tmp_path / "frontier.png"))
    engines = result["results"]["tiny-copy"]
    assert {"torch-fp32", "onnx-int8"} <= set(engines)
    assert all(0 <= e["accuracy"] <= 1 and e["texts_per_s"] > 0 for e in engines.values())
    assert "torch-fp32" in result["results"]["ensemble of 2"]
    assert result["matmul_peak"]["fp32"]["gflops"] > 0
    used = result["inference_utilisation"]["tiny-copy"]
    assert used["inference_gflops_per_text"] > 0 and 0 < used["torch-fp32"]["of_peak"] < 1
    training = result["training_utilisation (tiny-copy)"]["fp32"]
    assert training["gflops"] > 0 and training["samples_per_s"] > 0
    assert (tmp_path / "frontier.png").stat().st_size > 0 and result["machine"]["cpu"]
    assert result["texts"] == "SST-2 dev, 32 sentences, batch 32"


def test_frontier_scores_imdb_runs_on_a_sample_of_the_test_reviews(tmp_path, tiny_run_dir):
    import shutil

    copy = tmp_path / "tiny-copy"
    shutil.copytree(tiny_run_dir, copy)
    result = run_benchmark("frontier.py", tmp_path / "frontier.json", str(copy), "--dataset",
                           "imdb", "--texts", "16")
    assert result["texts"] == "IMDb test, 16 reviews, batch 32"
    assert all(0 <= e["accuracy"] <= 1 and e["texts_per_s"] > 0
               for e in result["results"]["tiny-copy"].values())


def test_students_trains_its_arms_and_reports_augmentation(tmp_path, tiny_run_dir):
    # The tiny teacher has 2 layers: the 2-layer arms are the ones it can teach.
    result = run_benchmark("students.py", tmp_path / "students.json", "--teacher",
                           str(tiny_run_dir), "--arms", "student2", "student2-aug",
                           "student2-pkd", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"),
                           "--resume")
    arms = result["arms"]
    assert set(arms) == {"student2", "student2-aug", "student2-pkd"}
    assert result["shrunk_to"] == {"epochs": 1.0}
    assert arms["student2"]["augmented_rows"] == 0 < arms["student2-aug"]["augmented_rows"]
    assert arms["student2-aug"]["preset"] == "sst2-minilm-student2-aug"
    assert arms["student2"]["hidden_weight"] == 0 < arms["student2-pkd"]["hidden_weight"]
    assert arms["student2"]["unlabeled_rows"] == 0
    assert "layer_matching_gain_student2-pkd" in result["summary"]
    assert "layer_matching_gain_student3" not in result["summary"]  # no 3-layer arms ran
    rates = result["summary"]["behavioural_mean_failure_rate"]
    assert set(rates) == {"teacher", "student2", "student2-aug", "student2-pkd"}
    assert all(0 <= r <= 1 for r in rates.values())


def test_students_of_an_imdb_teacher_use_the_imdb_presets(tmp_path, tiny_run_dir):
    from sentitune.run import Run

    runs = tmp_path / "runs"
    result = run_benchmark("students.py", tmp_path / "students.json", "--teacher",
                           str(tiny_run_dir), "--dataset", "imdb", "--arms", "student2",
                           "--epochs", "1", "--runs-dir", str(runs), "--resume")
    assert result["dataset"] == "imdb" and set(result["arms"]) == {"student2"}
    assert result["arms"]["student2"]["preset"] == "imdb-minilm-student2"
    student, teacher = Run.open(runs / "student2"), Run.open(tiny_run_dir)
    assert student.config.training.batch_size == 16  # the IMDb preset's
    # No seed in the preset: the student keeps its teacher's, so it holds out the same rows.
    assert student.config.training.seed == teacher.config.training.seed == result["arms"][
        "student2"]["seed"]
    # An arm of the SST-2 family only: one line naming the IMDb arms, exit 2, nothing trained.
    refused = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "students.py"), "--teacher",
         str(tiny_run_dir), "--dataset", "imdb", "--arms", "student3-pkd", "--runs-dir",
         str(tmp_path / "other")], capture_output=True, text=True,
        env=os.environ | {"PYTHONPATH": str(REPO / "benchmarks")})
    assert refused.returncode == 2 and not (tmp_path / "other").exists()
    assert refused.stderr.splitlines()[-1].endswith(
        "student3-pkd: not an arm of --dataset imdb; its arms are student3, student3-aug, "
        "student2, student2-aug")


def test_audit_benchmark_measures_flipped_rows_found(tmp_path, tiny_bert):
    result = run_benchmark(
        "audit.py", tmp_path / "audit.json", "--model", str(tiny_bert), "--rows", "120",
        "--seeds", "0", "--epochs", "0", "--modes", "fast", "--real-rows", "skip",
        "--runs-dir", str(tmp_path / "runs"))
    seed = result["seeds"]["0"]
    assert seed["flipped"] == 12
    found = seed["modes"]["fast"]
    assert 0 <= found["precision"] <= 1 and 0 <= found["recall"] <= 1
    assert found["precision_at_recall_0.6"]["recall"] >= 0.6
    assert result["summary"]["dev_accuracy_linear"].keys() == {
        "seeds", "cleaned_by", "original", "noisy", "cleaned", "share_of_noise_cost_recovered"}
    assert result["summary"]["fast"]["seeds"] == 1
    assert result["machine"]["cpu"]


def test_explain_faithfulness_benchmark_compares_methods_with_random_words(tmp_path,
                                                                          tiny_run_dir):
    result = run_benchmark("explain_faithfulness.py", tmp_path / "explain.json",
                           "--run", str(tiny_run_dir), "--texts", "6")
    assert set(result["methods"]) == {"integrated-gradients", "gradient-x-input", "occlusion"}
    for method in result["methods"].values():
        assert method["seconds_per_text"] > 0
        assert set(method) == {"seconds_per_text", "top_10%", "top_20%"}
        assert {"comprehensiveness", "random_words", "ratio"} <= set(method["top_20%"])
    assert result["setup"]["texts"] == 6 and result["machine"]["cpu"]


def test_teacher_recipes_trains_its_arms_beside_the_baseline(tmp_path, tiny_bert, tiny_run_dir):
    result = run_benchmark("teacher_recipes.py", tmp_path / "teachers.json", "--baseline",
                           str(tiny_run_dir), "--model", str(tiny_bert), "--train-samples",
                           "64", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"))
    assert set(result["arms"]) == {"lr1e-4-ld0.9", "lr1e-4-ld0.9-aug", "frames", "plain",
                                   "imdb-first", "imdb-first-frames"}
    # The baseline was trained at seed 7, so the plain recipe at seed 42 is trained.
    assert result["arms"]["plain"]["run"] == str(tmp_path / "runs" / "plain-42")
    assert result["shrunk_to"] == {"train_samples": 64, "epochs": 1.0}
    baseline_rate = result["baseline"]["behavioural"]["mean_failure_rate"]
    for name, arm in result["arms"].items():
        assert 0 <= arm["dev_accuracy"] <= 1 and len(arm["history"]) == 1
        assert 0 <= arm["behavioural"]["mean_failure_rate"] <= 1
        found = result["summary"][name]
        assert found["minus_baseline"] == round(
            arm["dev_accuracy"] - result["baseline"]["dev_accuracy"], 4)
        assert found["behavioural_over_baseline"] == (round(
            arm["behavioural"]["mean_failure_rate"] / baseline_rate, 3) if baseline_rate
            else None)
    config = (tmp_path / "runs" / "lr1e-4-ld0.9-aug-42" / "config.yaml").read_text()
    assert "augment: 1" in config and "layer_decay: 0.9" in config
    framed = yaml.safe_load((tmp_path / "runs" / "frames-42" / "config.yaml").read_text())
    assert framed["training"]["augment_methods"] == ["identity", "frames"]
    assert framed["training"]["layer_decay"] == 1.0
    assert framed["augmentation"]["labels"] == "source text's, flipped by negating frames"
    # imdb-first fine-tunes on SST-2 the model of an imdb-minilm-intermediate run.
    stage = yaml.safe_load((tmp_path / "runs" / "imdb128-42" / "config.yaml").read_text())
    assert stage["data"]["dataset"] == "imdb" and stage["data"]["max_length"] == 128
    assert stage["training"]["epochs"] == 1 and stage["data"]["truncation"] == "tail"
    first = yaml.safe_load((tmp_path / "runs" / "imdb-first-42" / "config.yaml").read_text())
    assert first["model"]["model"] == str(tmp_path / "runs" / "imdb128-42" / "model")
    assert first["data"]["dataset"] == "sst2"
    assert result["arms"]["imdb-first"]["settings"] == {"model": first["model"]["model"]}
    both = yaml.safe_load((tmp_path / "runs" / "imdb-first-frames-42" / "config.yaml").read_text())
    assert both["model"] == first["model"]  # one intermediate run serves both arms
    assert both["training"]["augment_methods"] == ["identity", "frames"]
    assert result["intermediate"]["train_rows"] == 64
    assert result["intermediate"]["preset"] == "imdb-minilm-intermediate"
    # --seeds trains an arm again at another seed; --resume reuses the finished seed.
    again = run_benchmark("teacher_recipes.py", tmp_path / "seeds.json", "--baseline",
                          str(tiny_run_dir), "--model", str(tiny_bert), "--train-samples",
                          "64", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"),
                          "--arms", "frames", "plain", "--seeds", "42", "7", "--resume")
    assert set(again["arms"]) == {"frames", "frames-seed7", "plain", "plain-seed7"}
    assert set(again["arms"]) == set(again["summary"])
    assert again["arms"]["frames"]["history"] == result["arms"]["frames"]["history"]
    assert (again["arms"]["frames-seed7"]["seed"], again["arms"]["frames"]["seed"]) == (7, 42)
    # The plain recipe at the baseline's own seed is the baseline run, not trained again.
    assert again["arms"]["plain-seed7"]["run"] == again["baseline"]["run"] == str(tiny_run_dir)
    assert not (tmp_path / "runs" / "plain-7").exists()
    # Over the seeds, frames meets the plain recipe on the means and seed by seed.
    rate = {name: arm["behavioural"]["mean_failure_rate"] for name, arm in again["arms"].items()}
    frames = again["over_seeds"]["frames"]
    assert frames["seeds"] == [7, 42] == again["over_seeds"]["plain"]["seeds"]
    assert frames["behavioural_mean"] == round((rate["frames"] + rate["frames-seed7"]) / 2, 4)
    plain_mean = (rate["plain"] + rate["plain-seed7"]) / 2
    assert frames["behavioural_over_plain_mean"] == (
        round(frames["behavioural_mean"] / plain_mean, 3) if plain_mean else None)
    same_seed = frames["behavioural_over_plain_same_seed"]  # JSON keys are strings
    assert set(same_seed) == {"7", "42"}
    assert same_seed["7"] == (round(rate["frames-seed7"] / rate["plain-seed7"], 3)
                              if rate["plain-seed7"] else None)
    assert "behavioural_over_plain_mean" not in again["over_seeds"]["plain"]


def test_augment_labels_measures_every_method_and_both_defaults(tmp_path, tiny_run_dir):
    result = run_benchmark("augment_labels.py", tmp_path / "augment.json", "--teacher",
                           str(tiny_run_dir), "--texts", "40")
    methods = result["methods"]
    assert {"neighbours", "mask", "ngram", "identity", "negation"} < set(methods)
    assert "train default (identity,mask)" in methods and "distill default" in methods
    assert "frames" not in methods  # a frame's label is its rule's, not its source's
    for found in methods.values():
        assert found["copies"] == sum(b["copies"] for b in found["by_length"].values())
        assert found["label_changed"] is None or 0 <= found["label_changed"] <= 1
    assert methods["mask"]["copies"] > 0 and result["machine"]["cpu"]
