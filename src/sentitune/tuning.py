"""`sentitune tune`: search the learning rate and recipe with Optuna.

Each trial trains a run (the base config with the trial's parameters) and is scored by the
run's validation metric (`--metric`, macro-F1 by default). Every trial uses the base
config's seed, so trials differ only in their parameters; the TPE sampler is seeded from it
too. A trial whose validation score at some epoch falls below the median of earlier trials
at that epoch is pruned (a Trainer callback reports each epoch to Optuna).

    TUNE_DIR/
      study.db          the Optuna study (SQLite): run `tune` again to resume it
      best.yaml         the best trial's resolved config: `sentitune train --config best.yaml`
      trials.csv        one row per trial: state, score, accuracy, time, parameters
      score_vs_lr.png   validation score against learning rate, pruned trials marked

A search interrupted mid-trial resumes with that trial's parameters tried again (the
sampler's seed moves on with the trials done, so new trials draw new parameters). Trial
runs are trained in TUNE_DIR/trials/ and removed once scored, or by the next search after
a kill: the preset, not the weights, is the result (train it once more to get the model).
While a search runs, TUNE_DIR.lock names it (as `sentitune train` does): a second search
of the same TUNE_DIR is refused.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
import warnings
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sentitune import console, files
from sentitune.config import (
    OPTIMIZERS,
    SCHEDULERS,
    RunConfig,
    TuneConfig,
    config_yaml,
    make_config,
    resolved,
)
from sentitune.errors import SentituneError
from sentitune.run import Run, RunLock

STUDY_FILE = "study.db"
STUDY_NAME = "sentitune"


@dataclass(frozen=True)
class Param:
    """One searched setting: a numeric range (`log` for rates) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple | None = None

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name}={'|'.join(map(str, self.choices))}"
        return f"{self.name}={self.low:g}:{self.high:g}{' (log)' if self.log else ''}"


# Default ranges. Full fine-tuning of BERT-sized models works around 2e-5..1e-4, LoRA an
# order of magnitude or two higher (at 5e-5 LoRA stayed at chance on 1,000 SST-2 sentences).
LEARNING_RATES = {"full": (1e-5, 3e-4), "lora": (1e-4, 1e-2)}
DEFAULT_SPACE: dict[str, Param] = {
    "learning_rate": Param("learning_rate", log=True),  # range per method, above
    "epochs": Param("epochs", 1, 4, integer=True),
    "batch_size": Param("batch_size", choices=(8, 16, 32)),
    "warmup_ratio": Param("warmup_ratio", 0.0, 0.2),
    "weight_decay": Param("weight_decay", 0.0, 0.1),
    "scheduler": Param("scheduler", choices=tuple(SCHEDULERS)),
    "lora_r": Param("lora_r", choices=(4, 8, 16)),
    "lora_alpha": Param("lora_alpha", choices=(8, 16, 32)),
    "layer_decay": Param("layer_decay", 0.7, 1.0),
    "optimizer": Param("optimizer", choices=OPTIMIZERS),
}
LORA_ONLY = ("lora_r", "lora_alpha")
# Searched only when --search names them: the default search stays the classic recipe.
OPT_IN = ("layer_decay", "optimizer")
INTEGER_SETTINGS = ("epochs", "batch_size", "lora_r", "lora_alpha")


def search_space(search: str | None, method: str, fixed: Collection[str] = ()) -> list[Param]:
    """The parameters of `--search` (None: every default one of `method` but those `fixed`:
    a setting given explicitly, `--epochs 1`, holds in every trial)."""
    if search is None:
        names = [n for n in DEFAULT_SPACE
                 if (method == "lora" or n not in LORA_ONLY) and n not in OPT_IN and n not in fixed]
        if not names:
            raise SentituneError("every searchable parameter is fixed by a flag; drop one of "
                                 f"{', '.join(console.flag(n) for n in fixed)}")
        return [_with_default_range(DEFAULT_SPACE[n], method) for n in names]
    items = [item.strip() for item in search.split(",") if item.strip()]
    if not items:
        raise SentituneError("--search names no parameter; give e.g. --search learning_rate "
                             f"(parameters: {', '.join(DEFAULT_SPACE)})")
    space: dict[str, Param] = {}
    for item in items:
        name, _, spec = (part.strip() for part in item.partition("="))
        if name not in DEFAULT_SPACE:
            raise SentituneError(f"unknown parameter '{name}' in --search; parameters: "
                                 f"{', '.join(DEFAULT_SPACE)}")
        if name in LORA_ONLY and method != "lora":
            raise SentituneError(f"--search {name} needs --method lora (full fine-tuning has "
                                 "no adapter rank)")
        if name in space:
            raise SentituneError(f"--search names '{name}' twice; give it once")
        space[name] = _parse_param(name, spec, method)
        if name in fixed:
            raise SentituneError(f"{console.flag(name)} fixes {name}, and --search searches "
                                 "it; give one of the two")
    return list(space.values())


def _with_default_range(param: Param, method: str) -> Param:
    if param.name != "learning_rate":
        return param
    low, high = LEARNING_RATES[method]
    return Param("learning_rate", low, high, log=True)


def _parse_param(name: str, spec: str, method: str) -> Param:
    default = _with_default_range(DEFAULT_SPACE[name], method)
    if not spec:
        return default
    if "|" in spec or name in ("scheduler", "optimizer"):
        choices = tuple(_value(name, part.strip()) for part in spec.split("|") if part.strip())
        if len(set(choices)) < 1:
            raise SentituneError(f"--search {name}={spec}: no choices; give e.g. "
                                 f"{default.describe()}")
        return Param(name, choices=tuple(dict.fromkeys(choices)))
    low_text, sep, high_text = spec.partition(":")
    if not sep:
        raise SentituneError(f"--search {name}={spec}: give a range LOW:HIGH or choices "
                             f"A|B|C, e.g. {default.describe()}")
    low, high = _value(name, low_text.strip()), _value(name, high_text.strip())
    if not low < high:
        raise SentituneError(f"--search {name}={spec}: LOW must be below HIGH")
    if name == "learning_rate" and low <= 0:
        raise SentituneError(f"--search {name}={spec}: learning rates must be > 0")
    if name == "warmup_ratio" and not (low >= 0 and high < 1):
        raise SentituneError(f"--search {name}={spec}: the range must lie in [0, 1)")
    if name == "layer_decay" and not (low > 0 and high <= 1):
        raise SentituneError(f"--search {name}={spec}: the range must lie in (0, 1]")
    if low < 0 or (name in INTEGER_SETTINGS and low < 1):
        raise SentituneError(f"--search {name}={spec}: the range must be positive")
    return Param(name, low, high, log=default.log, integer=name in INTEGER_SETTINGS)


def _value(name: str, text: str) -> Any:
    named = {"scheduler": tuple(SCHEDULERS), "optimizer": OPTIMIZERS}.get(name)
    if named is not None:
        if text not in named:
            raise SentituneError(f"--search {name}: '{text}' is not one of "
                                 f"{', '.join(named)}")
        return text
    try:
        return int(text) if name in INTEGER_SETTINGS else float(text)
    except ValueError:
        kind = "an integer" if name in INTEGER_SETTINGS else "a number"
        raise SentituneError(f"--search {name}: expected {kind}, got '{text}'") from None


@dataclass(frozen=True)
class TuneResult:
    output: Path
    metric: str
    best_value: float | None
    best_params: dict
    best_config: Path | None  # best.yaml, None while no trial has finished
    trials: list[dict]  # the rows of trials.csv
    runtime_s: float


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise SentituneError("sentitune tune needs optuna: pip install 'sentitune[tune]'") \
            from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _check_budget(settings: TuneConfig) -> None:
    if settings.trials < 1:
        raise SentituneError(f"--trials must be at least 1, got {settings.trials}")
    if settings.timeout is not None and settings.timeout <= 0:
        raise SentituneError(f"--timeout must be > 0 minutes, got {settings.timeout}")


def default_output(config: RunConfig) -> Path:
    return Path("runs") / (f"tune-{Path(config.data.dataset).stem}-"
                           f"{Path(config.model.model).name}-{config.training.method}")


def tune(
    config: RunConfig | str | Path | None = None,
    output: str | Path | None = None,
    *,
    trials: int = TuneConfig.trials,
    timeout: float | None = None,
    search: str | None = None,
    pruning: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> TuneResult:
    """Search `search` (see TuneConfig) around `config` + `overrides` for at most `trials`
    trials and `timeout` minutes; resumes the study in `output` when there is one."""
    settings = TuneConfig(trials=trials, timeout=timeout, search=search, pruning=pruning)
    _check_budget(settings)
    base = make_config(config, **overrides)
    space = search_space(settings.search, base.training.method, fixed=overrides)
    optuna = _import_optuna()
    output = Path(output) if output is not None else default_output(base)
    output.parent.mkdir(parents=True, exist_ok=True)
    lock = RunLock.acquire(output.with_name(output.name + ".lock"))  # one search per study
    try:
        return _search(optuna, output, base, space, settings, overwrite, progress)
    finally:
        lock.release()


def _search(optuna, output: Path, base: RunConfig, space: Sequence[Param],
            settings: TuneConfig, overwrite: bool, progress: bool) -> TuneResult:
    study = _open_study(optuna, output, base, space, settings, overwrite)
    metric = base.training.metric

    done = [t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"]
    remaining = settings.trials - len(done)
    started = time.perf_counter()
    if remaining > 0:
        study.optimize(
            _objective(optuna, output, base, space, settings.pruning, progress),
            n_trials=remaining,
            timeout=None if settings.timeout is None else settings.timeout * 60,
            callbacks=[lambda study, _trial: write_outputs(study, output, base, metric)],
            gc_after_trial=True,
        )
    elif progress:
        print(f"{output} already holds {len(done)} finished trials (--trials "
              f"{settings.trials}); raise --trials to search further", flush=True)
    rows, best_path = write_outputs(study, output, base, metric)
    best = _best_trial(study)
    return TuneResult(output, metric, None if best is None else best.value,
                      {} if best is None else best.params, best_path, rows,
                      round(time.perf_counter() - started, 3))


def _settings_record(base: RunConfig, space: Sequence[Param], settings: TuneConfig) -> str:
    return json.dumps({"config": base.to_dict(), "search": [asdict(p) for p in space],
                       "pruning": settings.pruning}, sort_keys=True, default=str)


def _open_study(optuna, output: Path, base: RunConfig, space: Sequence[Param],
                settings: TuneConfig, overwrite: bool):
    """The study in `output` (created, or resumed when its settings match)."""
    study_path = output / STUDY_FILE
    if output.exists():
        if overwrite:
            shutil.rmtree(output)
        elif not study_path.is_file() and any(output.iterdir()):
            raise SentituneError(f"{output} exists and holds no study; choose another "
                                 "--output or --overwrite")
    output.mkdir(parents=True, exist_ok=True)
    direction = "minimize" if base.training.metric == "loss" else "maximize"
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
              if settings.pruning else optuna.pruners.NopPruner())
    study = optuna.create_study(
        storage=f"sqlite:///{study_path.resolve()}", study_name=STUDY_NAME,
        load_if_exists=True, direction=direction, pruner=pruner)
    record = _settings_record(base, space, settings)
    saved = study.user_attrs.get("settings")
    if saved is None:
        study.set_user_attr("settings", record)
    elif saved != record:
        raise SentituneError(f"{output} holds a study with other settings (config, search "
                             "space or pruning); resume it with the same flags, or choose "
                             "another --output or --overwrite")
    # A trial cut off by an interrupted search is failed and tried again first; its
    # half-trained run is removed (this search holds the lock: no trial is running).
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params)
    shutil.rmtree(output / "trials", ignore_errors=True)
    # Seeded, but not alike in every session: a resumed search would draw again the
    # parameters its first session drew.
    study.sampler = optuna.samplers.TPESampler(seed=base.training.seed + len(study.trials))
    return study


def pruning_callback(optuna, trial, metric: str):
    """A TrainerCallback that reports each epoch's validation `metric` to the trial and
    stops training when Optuna prunes it (defined here: transformers loads only to train)."""
    from transformers import TrainerCallback

    class PruneOnValidation(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get(f"eval_{metric}")
            if value is None:
                return
            trial.report(float(value), step=round(state.epoch))
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {round(state.epoch)}: {metric} {value:.4f}")

    return PruneOnValidation()


def _objective(optuna, output: Path, base: RunConfig, space: Sequence[Param], pruning: bool,
               progress: bool):
    from sentitune.training import train

    metric = base.training.metric

    def objective(trial) -> float:
        params = {p.name: p.suggest(trial) for p in space}
        config = resolved(base.replace(**params))
        trial.set_user_attr("learning_rate", config.training.learning_rate)
        run_dir = output / "trials" / f"trial-{trial.number}"
        callbacks = [pruning_callback(optuna, trial, metric)] if pruning else []
        started = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = train(config, run_dir, overwrite=True, progress=False,
                               callbacks=callbacks)
        finally:
            trial.set_user_attr("duration_s", round(time.perf_counter() - started, 2))
            Run.remove(run_dir)
        validation = result.metrics["validation"]
        trial.set_user_attr("accuracy", validation["accuracy"])
        trial.set_user_attr("epochs_run", result.metrics["epochs_run"])
        trial.set_user_attr("warnings", [str(w.message) for w in caught
                                         if "has not learned" in str(w.message)])
        if progress:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
            print(f"trial {trial.number}: {metric} {validation[metric]:.4f} (accuracy "
                  f"{validation['accuracy']:.4f}) with {shown}", flush=True)
        return float(validation[metric])

    return objective


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _best_trial(study):
    try:
        return study.best_trial
    except ValueError:  # no completed trial yet
        return None


def trial_rows(study, metric: str) -> list[dict]:
    """One row per trial: number, state, score, accuracy, time, learning rate, parameters."""
    rows = []
    for t in study.trials:
        row = {"trial": t.number, "state": t.state.name.lower(),
               metric: t.value if t.value is not None else (
                   t.intermediate_values[max(t.intermediate_values)]
                   if t.intermediate_values else None),
               "accuracy": t.user_attrs.get("accuracy"),
               "epochs_run": t.user_attrs.get("epochs_run",
                                              max(t.intermediate_values, default=None)),
               "duration_s": t.user_attrs.get("duration_s"),
               "learning_rate": t.user_attrs.get("learning_rate",
                                                 t.params.get("learning_rate"))}
        row.update({k: v for k, v in t.params.items() if k != "learning_rate"})
        rows.append(row)
    return rows


def write_outputs(study, output: Path, base: RunConfig, metric: str
                  ) -> tuple[list[dict], Path | None]:
    """trials.csv, score_vs_lr.png and (once a trial has finished) best.yaml."""
    rows = trial_rows(study, metric)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with files.atomic_path(output / "trials.csv") as partial, \
            partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    plot_score_vs_lr(rows, metric, output / "score_vs_lr.png")
    best = _best_trial(study)
    if best is None:
        return rows, None
    config = resolved(base.replace(**best.params))
    facts = {"tuned": {"study": str(output / STUDY_FILE), "trial": best.number,
                       metric: best.value, "accuracy": best.user_attrs.get("accuracy"),
                       "trials": len(rows)}}
    path = output / "best.yaml"
    files.write_text(path, config_yaml(config, facts))
    return rows, path


def plot_score_vs_lr(rows: list[dict], metric: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from sentitune.plots import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for state, marker, label in (("complete", "o", "complete"),
                                 ("pruned", "x", "pruned (last epoch reported)")):
        picked = [r for r in rows if r["state"] == state and r[metric] is not None
                  and r["learning_rate"] is not None]
        if picked:
            ax.scatter([r["learning_rate"] for r in picked], [r[metric] for r in picked],
                       marker=marker, label=label)
    scored = [r for r in rows if r["state"] == "complete" and r[metric] is not None]
    if scored:
        pick = min if metric == "loss" else max
        best = pick(scored, key=lambda r: r[metric])
        ax.scatter([best["learning_rate"]], [best[metric]], s=160, facecolors="none",
                   edgecolors="red", label=f"best (trial {best['trial']})")
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel=f"validation {metric}",
           title="Validation score against learning rate")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return save_figure(fig, path)
