"""One `_VERB_parser` per verb, and `build_parser` joining them under `sentitune`."""

from __future__ import annotations

import argparse
import difflib
import re
import sys

from sentitune import __version__
from sentitune.cli.commands import (
    cmd_audit,
    cmd_check,
    cmd_compare,
    cmd_data,
    cmd_distill,
    cmd_evaluate,
    cmd_explain,
    cmd_export,
    cmd_labels,
    cmd_predict,
    cmd_presets,
    cmd_select,
    cmd_serve,
    cmd_train,
    cmd_tune,
)
from sentitune.cli.flags import (
    SPLITS,
    add_config_flags,
    flag,
    quiet_flag,
    run_dirs_argument,
    run_writing_flags,
)
from sentitune.config import LORA_SETTINGS, SECTIONS, available_presets

# Which inference settings each verb that uses a trained run takes.
EVALUATE_INFERENCE = ("backend", "batch_size", "long_text", "stride", "review_truncated")
CHECK_INFERENCE = ("backend", "batch_size")


def _labels_parser(commands) -> None:
    """`sentitune labels add|stats|export`: the label store."""
    p = commands.add_parser("labels", help="the label store: add texts, agreement, export")
    verbs = p.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    store_help = "a SQLite file (created when new) or a database URL (postgresql://...)"
    q = verbs.add_parser("add", help="add texts to label: a review queue, predict output "
                                     "(its needs_review rows) or any file of texts")
    q.add_argument("store", metavar="STORE", help=store_help)
    flag(q, "--from", dest="source", required=True, metavar="FILE",
          help="CSV/TSV/JSON/JSONL/parquet/TXT file of texts")
    flag(q, "--run", help="the run whose answers the file holds; a new store takes its labels")
    flag(q, "--labels", help="a new store's labels without a run, comma-separated")
    flag(q, "--task", choices=("binary", "multiclass", "multilabel"),
          help="a new store's task with --labels (default: binary for two labels, else "
               "multiclass)")
    flag(q, "--all", dest="everything", action=argparse.BooleanOptionalAction, default=False,
          help="predict output: every row, not only those flagged needs_review")
    flag(q, "--text-column", help="text column of the file (default: guessed)")
    q = verbs.add_parser("stats", help="texts, labels per annotator, agreement (Cohen's "
                                       "kappa / Krippendorff's alpha)")
    q.add_argument("store", metavar="STORE", help=store_help)
    q = verbs.add_parser("export", help="one consensus label per text, for training")
    q.add_argument("store", metavar="STORE", help=store_help)
    flag(q, "--output", required=True, help="file to write (.csv or .jsonl)")
    flag(q, "--annotator", help="only this annotator's labels (default: the majority of all)")
    p.set_defaults(func=cmd_labels)


class _Parser(argparse.ArgumentParser):
    """No abbreviations (`--epoch` is no `--epochs`), and a mistake is one `error:` line with
    a "did you mean", not the usage: the same shape as every other user error."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        hint = ""
        if message.startswith("unrecognized arguments:"):
            flags = [a for a in message.split(":", 1)[1].split() if a.startswith("-")]
            known = [o for action in self._actions for o in action.option_strings]
            close = [m for f in flags for m in difflib.get_close_matches(f.split("=")[0],
                                                                          known, n=1)]
            if close:
                hint = f"; did you mean {' or '.join(close)}?"
        elif (wrong := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)):
            close = difflib.get_close_matches(wrong[1], re.findall(r"'([^']*)'", wrong[2]), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
        print(f"error: {message}{hint} (`{self.prog} --help` lists the options)",
              file=sys.stderr)
        self.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sentitune",
        description="Fine-tune transformers into sentiment classifiers and put them to work.")
    parser.add_argument("--version", action="version", version=f"sentitune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_verb in (_train_parser, _data_parser, _evaluate_parser, _check_parser,
                     _predict_parser, _serve_parser, _export_parser, _compare_parser,
                     _tune_parser, _distill_parser, _labels_parser, _select_parser,
                     _audit_parser, _explain_parser):
        add_verb(commands)
    commands.add_parser("presets", help="list the YAML presets and what each is for").set_defaults(
        func=cmd_presets)
    return parser


def _train_parser(commands) -> None:
    p = commands.add_parser("train", help="fine-tune a model into a run directory")
    flag(p, "--config", help=f"preset name ({', '.join(available_presets())}) or YAML "
                              "file to start from")
    flag(p, "--output", help="run directory to create (default: runs/DATA-MODEL)")
    run_writing_flags(p)
    quiet_flag(p)
    add_config_flags(p)
    p.set_defaults(func=cmd_train)


def _data_parser(commands) -> None:
    p = commands.add_parser("data", help="exploratory report on a dataset")
    p.add_argument("dataset_positional", nargs="?", metavar="DATA", help=argparse.SUPPRESS)
    flag(p, "--config", help="preset whose data settings to start from")
    flag(p, "--output", help="folder for data_report.json and lengths.png "
                              "(default: runs/data-DATA)")
    flag(p, "--model", default="minilm", help="tokenizer to measure lengths with")
    quiet_flag(p)
    add_config_flags(p, ("data",))
    p.set_defaults(func=cmd_data)


def _evaluate_parser(commands) -> None:
    p = commands.add_parser("evaluate", help="metrics of a run on a labelled split")
    run_dirs_argument(p, "evaluated")
    flag(p, "--data", help="name or file (default: the run's own dataset)")
    flag(p, "--split", choices=SPLITS,
          help="split to score (default: test if the data has one, else the run's own "
               "validation rows; never its training rows unless asked)")
    flag(p, "--output", help="folder for the results (default: RUN_DIR/eval-DATA-SPLIT, or "
                              "RUN_DIR/eval-DATA for a plain file)")
    flag(p, "--text-column", help="text column of --data (default: guessed)")
    flag(p, "--label-column", help="label column of --data (default: guessed)")
    flag(p, "--slice", action="append", default=[], metavar="NAME=REGEX",
          help="extra slice of texts matching REGEX (case-insensitive); repeatable")
    flag(p, "--target-accuracy", type=float,
          help="pick the review threshold reaching this accuracy on the run's validation "
               "split and save it as the run's default")
    flag(p, "--review-queue", metavar="FILE",
          help="write the examples below the review threshold, most uncertain first "
               "(.jsonl or .csv)")
    flag(p, "--behavioral", action=argparse.BooleanOptionalAction, default=None,
          help="run the behavioural tests (default: on binary negative/positive runs)")
    add_config_flags(p, ("inference",), only=EVALUATE_INFERENCE)
    p.set_defaults(func=cmd_evaluate)


def _check_parser(commands) -> None:
    p = commands.add_parser("check", help="behavioural tests of a binary run")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    flag(p, "--output", help="JSON file for the results "
                              "(default: RUN_DIR/check/behavioral.json)")
    flag(p, "--max-failure-rate", type=float,
          help="exit with status 1 when any test fails more often than this")
    flag(p, "--examples", type=int, default=5, help="failing cases kept per test")
    add_config_flags(p, ("inference",), only=CHECK_INFERENCE)
    p.set_defaults(func=cmd_check)


def _predict_parser(commands) -> None:
    from sentitune.inference.rows import ENGINES, OUTPUT_SUFFIXES

    p = commands.add_parser("predict", help="classify texts or a file")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    p.add_argument("texts", nargs="*", help="texts to classify; run directories right after "
                                            "the first join it in an ensemble")
    flag(p, "--input", help="file to score, or a folder of them: CSV/TSV/JSON/JSONL/"
                             "parquet/TXT (optionally .gz); every row gets an output row")
    flag(p, "--output", help=f"where to write results ({'/'.join(OUTPUT_SUFFIXES)}); rows "
                              "that cannot be scored also go to OUTPUT.errors.jsonl")
    flag(p, "--text-column", help="column to score (default: the run's training column "
                                   "if present, else guessed)")
    flag(p, "--keep-columns", action=argparse.BooleanOptionalAction, default=True,
          help="copy the input's other columns (e.g. an id) into the output")
    quiet_flag(p)
    flag(p, "--engine", default="local", choices=ENGINES,
          help="local: this process; ray: Ray Data over a pool of model actors "
               "(pip install 'sentitune[ray]')")
    flag(p, "--address", help="--engine ray: the Ray cluster to run on, e.g. "
                               "ray://head:10001 (default: start a local Ray)")
    flag(p, "--ray-cpus", type=int,
          help="--engine ray: CPUs of the local Ray (default: all of this machine's)")
    flag(p, "--actors", type=int,
          help="--engine ray: model replicas, one CPU each (default: one per Ray CPU)")
    add_config_flags(p, ("inference",))
    p.set_defaults(func=cmd_predict)


def _explain_parser(commands) -> None:
    from sentitune.inference.explanations import METHODS

    p = commands.add_parser("explain", help="which words made a run choose its label")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    p.add_argument("texts", nargs="+", help="texts to explain")
    flag(p, "--method", default="integrated-gradients", choices=METHODS,
          help="integrated-gradients (captum; faithful), gradient-x-input (one backward "
               "pass) or occlusion (leave one word out; any backend)")
    flag(p, "--target", help="label to explain (default: the predicted one)")
    flag(p, "--steps", type=int, default=32, help="integrated-gradients: path steps")
    flag(p, "--output", help="also write the explanations to this .jsonl file")
    add_config_flags(p, ("inference",), only=("backend", "batch_size"))
    p.set_defaults(func=cmd_explain)


def _serve_parser(commands) -> None:
    p = commands.add_parser("serve", help="HTTP API and web page for a run")
    run_dirs_argument(p, "served")
    flag(p, "--workers", type=int, default=1, help="processes, each with its own model")
    flag(p, "--api-key-file", metavar="PATH",
          help="require the key written on this file's first line (kept out of `ps`)")
    add_config_flags(p, ("serve",))
    add_config_flags(p, ("inference",), skip=("batch_size",))  # --max-batch-size serves
    p.set_defaults(func=cmd_serve)


def _export_parser(commands) -> None:
    from sentitune.run import QUANTIZE_CHOICES

    p = commands.add_parser("export", help="export a run to ONNX for fast CPU inference")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    flag(p, "--quantize", choices=QUANTIZE_CHOICES, help="also write an int8 model")
    quiet_flag(p)
    p.set_defaults(func=cmd_export)


def _compare_parser(commands) -> None:
    p = commands.add_parser("compare", help="models and methods (full fine-tuning, LoRA) under "
                                            "identical settings")
    flag(p, "--runs", nargs="+", metavar="RUN_DIR",
          help="compare finished run directories instead of training new ones")
    flag(p, "--config", help="preset or YAML file every run starts from")
    flag(p, "--models", help="models to compare, e.g. minilm,distilbert,roberta (aliases, hub "
                              "ids or local folders; default: the one --model)")
    flag(p, "--methods", help="methods to compare, e.g. full,lora (default: full,lora with one "
                               "model, the preset's method with --models)")
    flag(p, "--seeds", default="42,43,44", help="seeds; each method runs on each")
    flag(p, "--lr-full", type=float,
          help="learning rate of full fine-tuning (default: the preset's, else 5e-5)")
    flag(p, "--lr-lora", type=float, help="learning rate of LoRA (default: 2e-3)")
    flag(p, "--output", help="folder for compare.* and runs/ (default: "
                              "runs/compare-DATA-MODELS)")
    flag(p, "--overwrite", action=argparse.BooleanOptionalAction, default=False,
          help="retrain runs already in OUTPUT/runs/ (default: reuse matching ones)")
    flag(p, "--onnx", action=argparse.BooleanOptionalAction, default=False,
          help="export runs without an ONNX model first, so ONNX speed is measured too")
    quiet_flag(p)
    add_config_flags(p, skip=("method", "learning_rate", "seed"))
    p.set_defaults(func=cmd_compare)


def _tune_parser(commands) -> None:
    p = commands.add_parser("tune", help="search the learning rate and recipe with Optuna")
    flag(p, "--config", help=f"preset name ({', '.join(available_presets())}) or YAML file "
                              "every trial starts from")
    flag(p, "--output", help="tune directory: study.db, best.yaml, trials.csv, "
                              "score_vs_lr.png; an existing one resumes "
                              "(default: runs/tune-DATA-MODEL-METHOD)")
    flag(p, "--overwrite", action=argparse.BooleanOptionalAction, default=False,
          help="start a new study instead of resuming the one in --output")
    quiet_flag(p)
    add_config_flags(p, ("tune", *SECTIONS))
    p.set_defaults(func=cmd_tune)


def _distill_parser(commands) -> None:
    p = commands.add_parser("distill", help="teach a smaller, faster student from fine-tuned "
                                            "runs (soft targets, unlabeled texts)")
    p.add_argument("teachers", nargs="+", metavar="TEACHER_RUN",
                   help="run directories with the same labels; several teach as an ensemble")
    flag(p, "--output", help="student run directory (default: TEACHER_RUN-student)")
    flag(p, "--config", help="distill preset (sst2-minilm-student3, ...) or YAML file with "
                              "distill: and training: sections; flags override it")
    run_writing_flags(p)
    quiet_flag(p)
    add_config_flags(p, ("distill", "data", "training"), skip=("method", *LORA_SETTINGS))
    p.set_defaults(func=cmd_distill)


def _select_parser(commands) -> None:
    from sentitune.selection import STRATEGIES

    p = commands.add_parser("select", help="choose the unlabeled texts most worth labelling "
                                           "next (active learning)")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    flag(p, "--unlabeled", required=True,
          help="file of texts to choose from: CSV/TSV/JSON/JSONL/parquet/TXT")
    flag(p, "--budget", type=int, required=True, help="how many texts to choose")
    flag(p, "--strategy", default="margin", choices=STRATEGIES,
          help="margin or entropy (the model's least sure), random, or diverse (uncertain "
               "and spread over the model's embedding space by k-means)")
    flag(p, "--output", required=True, help="JSONL file: text, the model's answer, rank")
    flag(p, "--store", help="also add the chosen texts to this label store (file or URL), "
                             "leaving out texts it already holds")
    flag(p, "--text-column", help="text column of --unlabeled (default: guessed)")
    flag(p, "--seed", type=int, default=0, help="seed of random and diverse")
    add_config_flags(p, ("inference",), only=("backend", "batch_size"))
    p.set_defaults(func=cmd_select)



def _audit_parser(commands) -> None:
    p = commands.add_parser("audit", help="find training labels that look wrong (cleanlab on "
                                          "out-of-fold probabilities) and conflicting "
                                          "duplicates")
    flag(p, "--output", help="folder for label_issues.jsonl, summary.html, cleaned.csv "
                              "(default: runs/audit-DATA)")
    quiet_flag(p)
    add_config_flags(p, ("audit",))
    p.set_defaults(func=cmd_audit)
