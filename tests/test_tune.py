"""`sentitune tune`: an Optuna study in the tune directory, resumable, with a preset out."""

from __future__ import annotations

import csv
import types

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli

optuna = pytest.importorskip("optuna")  # the `tune` extra

from sentitune.config import load_preset  # noqa: E402
from sentitune.tuning import (  # noqa: E402
    STUDY_FILE,
    STUDY_NAME,
    pruning_callback,
    search_space,
)

SEARCH = "learning_rate=1e-3:3e-2,scheduler=linear|cosine|constant"


def tiny_flags(tiny_bert, sentiment_csv) -> list[str]:
    return ["--data", str(sentiment_csv), "--model", str(tiny_bert), "--max-length", "32",
            "--batch-size", "16", "--warmup-ratio", "0", "--seed", "7", "--epochs", "1",
            "--quiet"]


def read_trials(tune_dir) -> list[dict]:
    with (tune_dir / "trials.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def load_study(tune_dir):
    return optuna.load_study(study_name=STUDY_NAME,
                             storage=f"sqlite:///{tune_dir / STUDY_FILE}")


@pytest.fixture(scope="module")
def tune_dir(tmp_path_factory, tiny_bert, sentiment_csv):
    """Two one-epoch trials of learning rate and scheduler on the tiny BERT."""
    from sentitune.cli import main

    out = tmp_path_factory.mktemp("tune") / "study"
    code = main(["tune", *tiny_flags(tiny_bert, sentiment_csv), "--output", str(out),
                 "--trials", "2", "--search", SEARCH])
    assert code == 0
    return out


def test_tune_writes_study_trials_plot_and_a_loadable_best_preset(tune_dir):
    rows = read_trials(tune_dir)
    assert [int(r["trial"]) for r in rows] == [0, 1]
    assert {r["state"] for r in rows} <= {"complete", "pruned"}
    for r in rows:
        assert 1e-3 <= float(r["learning_rate"]) <= 3e-2
        assert r["scheduler"] in ("linear", "cosine", "constant")
    assert (tune_dir / "score_vs_lr.png").stat().st_size > 1000
    assert not any((tune_dir / "trials").iterdir())  # trial runs are removed once scored

    study = load_study(tune_dir)
    best = study.best_trial
    preset = load_preset(str(tune_dir / "best.yaml"))
    assert preset.training.learning_rate == pytest.approx(best.params["learning_rate"])
    assert preset.training.scheduler == best.params["scheduler"]
    assert preset.training.seed == 7 and preset.data.max_length == 32
    complete = [r for r in rows if r["state"] == "complete"]
    assert max(float(r["f1_macro"]) for r in complete) == pytest.approx(best.value)


def test_an_interrupted_search_resumes_and_retries_the_cut_off_trial(
        tune_dir, tiny_bert, sentiment_csv, capsys):
    study = load_study(tune_dir)
    cut_off = study.ask({"learning_rate": optuna.distributions.FloatDistribution(
        1e-3, 3e-2, log=True)})  # left RUNNING, as a killed search leaves it
    lr = cut_off.params["learning_rate"]
    code, out, err = run_cli(capsys, "tune", *tiny_flags(tiny_bert, sentiment_csv),
                             "--output", str(tune_dir), "--trials", "3", "--search", SEARCH)
    assert code == 0, err
    rows = read_trials(tune_dir)
    assert [r["state"] for r in rows][2] == "fail"  # the cut-off one
    assert len([r for r in rows if r["state"] != "fail"]) == 3  # one new trial, not three
    assert float(rows[3]["learning_rate"]) == pytest.approx(lr)  # ... with its parameters
    assert "4 trials" in out and "best: validation f1_macro" in out


def test_resuming_with_other_settings_is_refused(tune_dir, tiny_bert, sentiment_csv, capsys):
    code, _, err = run_cli(capsys, "tune", *tiny_flags(tiny_bert, sentiment_csv),
                           "--output", str(tune_dir), "--trials", "9",
                           "--search", "learning_rate")
    assert_one_line_error(code, err, "holds a study with other settings")


def test_pruning_callback_stops_a_trial_below_the_median():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2,
                                                                   n_warmup_steps=0))
    for value in (0.8, 0.9):
        trial = study.ask()
        trial.report(value, step=1)
        study.tell(trial, value)
    trial = study.ask()
    callback = pruning_callback(optuna, trial, "f1_macro")
    state = types.SimpleNamespace(epoch=1.0)
    callback.on_evaluate(None, state, None, metrics={"eval_f1_macro": 0.95})  # kept
    trial_2 = study.ask()
    callback = pruning_callback(optuna, trial_2, "f1_macro")
    with pytest.raises(optuna.TrialPruned):
        callback.on_evaluate(None, state, None, metrics={"eval_f1_macro": 0.1})


def test_default_search_space_depends_on_the_method():
    full = {p.name: p for p in search_space(None, "full")}
    lora = {p.name: p for p in search_space(None, "lora")}
    assert "lora_r" not in full and {"lora_r", "lora_alpha"} <= set(lora)
    assert full["learning_rate"].log and full["learning_rate"].high < lora["learning_rate"].high


def test_an_explicit_setting_leaves_the_search():
    full = {p.name for p in search_space(None, "full", fixed={"epochs", "seed"})}
    assert "epochs" not in full and "learning_rate" in full


@pytest.mark.filterwarnings("ignore:the model")  # one epoch: learning is not the point
def test_tune_with_epochs_given_trains_that_many_epochs(tmp_path, tiny_bert, sentiment_csv,
                                                        capsys):
    """`tune --epochs 1` once ran 4 epochs per trial: the flag must hold in every trial."""
    out = tmp_path / "tune"
    code, _, _ = run_cli(capsys, "tune", *tiny_flags(tiny_bert, sentiment_csv), "--output",
                         str(out), "--trials", "1", "--no-pruning")
    assert code == 0
    (row,) = read_trials(out)
    assert "epochs" not in row and int(row["epochs_run"]) == 1
    assert load_preset(str(out / "best.yaml")).training.epochs == 1


@pytest.mark.parametrize(("flags", "message"), [
    (["--search", "epochs=1:3"], "--epochs fixes epochs, and --search searches it"),
    (["--search", ","], "--search names no parameter"),
    (["--search", "learning_rate,dropout"], "unknown parameter 'dropout'"),
    (["--search", "lora_r"], "--search lora_r needs --method lora"),
    (["--search", "learning_rate=1e-3:1e-4"], "LOW must be below HIGH"),
    (["--search", "epochs=a:b"], "expected an integer"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--timeout", "0"], "--timeout must be > 0"),
])
def test_bad_search_or_budget_is_one_line_and_writes_nothing(tiny_bert, sentiment_csv,
                                                             tmp_path, capsys, flags, message):
    out = tmp_path / "tune"
    code, _, err = run_cli(capsys, "tune", *tiny_flags(tiny_bert, sentiment_csv),
                           "--output", str(out), *flags)
    assert_one_line_error(code, err, message)
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:the model predicts")  # one epoch: learning is not the point
def test_scheduler_cosine_decays_along_a_cosine(tmp_path, tiny_bert, sentiment_csv):
    from conftest import tiny_config
    from transformers import TrainerCallback

    from sentitune.training import train

    class LearningRates(TrainerCallback):
        def __init__(self) -> None:
            self.rates: list[float] = []

        def on_step_begin(self, args, state, control, lr_scheduler=None, **kwargs):
            self.rates.append(lr_scheduler.get_last_lr()[0])

    recorder = LearningRates()
    train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0, scheduler="cosine",
                      learning_rate=1e-3), tmp_path / "cosine", progress=False,
          callbacks=[recorder])
    rates = recorder.rates
    steps = len(rates)
    assert rates[0] == pytest.approx(1e-3)
    quarter = rates[steps // 4] / 1e-3
    expected = 0.5 * (1 + np.cos(np.pi * (steps // 4) / steps))
    assert quarter == pytest.approx(expected, abs=1e-6)  # linear would give 1 - 1/4
