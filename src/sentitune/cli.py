"""Command line: a thin shell over the Python API.

Every verb calls the function of the same name in `sentitune` with options of the same
names. Run settings (`train`, `data`, `compare`) are generated from the config
dataclasses (same names, same help, same choices), so the CLI, YAML presets and the saved
config.yaml can never drift apart. Conventions, the same in every verb:

- one flag per concept (`--data` everywhere; older spellings still work, unlisted);
- booleans are `--x/--no-x` (the older `--x true|false` still works);
- an optional setting takes `none` to clear a preset's value (`--train-samples none`:
  every row);
- flags and free texts may come in any order.

User mistakes print one line and exit 2; nothing here holds logic of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from sentitune import __version__, console
from sentitune.config import (
    LORA_SETTINGS,
    SECTIONS,
    AuditConfig,
    DistillConfig,
    InferenceConfig,
    TuneConfig,
    available_presets,
)
from sentitune.errors import SentituneError
from sentitune.run import Run
from sentitune.server.settings import ServeSettings

CLEARS = ("none", "all", "off")  # spellings of "no value" for an optional setting
# Older spellings, still accepted but not listed: flag -> the flag it now is.
ALIASES = {"--dataset": "--data"}
SPLITS = ("train", "validation", "test")


def _boolean_words(argv: list[str], flags: set[str]) -> list[str]:
    """The older `--flag true|false` as `--flag` / `--no-flag`."""
    out: list[str] = []
    words = {"true": True, "yes": True, "1": True, "on": True,
             "false": False, "no": False, "0": False, "off": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in flags and eq and value.lower() in words:
            out.append(name if words[value.lower()] else "--no-" + name[2:])
        elif arg in flags and i + 1 < len(argv) and argv[i + 1].lower() in words:
            out.append(arg if words[argv[i + 1].lower()] else "--no-" + arg[2:])
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def _converter(kind: str, optional: bool):
    base = int if "int" in kind else float if "float" in kind else str

    def convert(text: str):
        if optional and text.lower() in CLEARS:
            return None
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if base is int else 'a number'}"
                f"{' or none' if optional else ''}, got '{text}'") from None

    convert.__name__ = base.__name__  # argparse names the type in its messages
    return convert


def _add_config_flags(parser: argparse.ArgumentParser, sections: Sequence[str] = tuple(SECTIONS),
                      skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
    """One flag per setting (`only` those, none of `skip`); absent flags stay out of the
    namespace (default SUPPRESS), so only what was typed overrides the preset or the
    dataclass's default. A field without help text is no flag (a nested section)."""
    for section in sections:
        group = parser.add_argument_group(f"{section} settings")
        for f in dataclasses.fields(SECTIONS.get(section) or FLAG_ONLY_SECTIONS[section]):
            if f.name in skip or (only is not None and f.name not in only) \
                    or "help" not in f.metadata:
                continue
            _add_setting_flag(group, f)


def _add_setting_flag(group, f: dataclasses.Field) -> None:
    flag = f.metadata.get("flag") or ("--data" if f.name == "dataset"
                                      else "--" + f.name.replace("_", "-"))
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    text, choices = f.metadata["help"], f.metadata.get("choices")
    optional = "None" in kind  # "none" clears it
    shown = "" if f.default in (None, dataclasses.MISSING) else f" (default: {f.default})"
    common = {"dest": f.name, "default": argparse.SUPPRESS}
    if "bool" in kind:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, help=text + shown,
                           **common)
    elif kind.startswith("tuple"):  # several values: `--report-to mlflow tensorboard`
        shown_choices = ("{" + ",".join(("none", *choices)) + "}" if choices
                         else f.name.split("_")[-1].upper())
        group.add_argument(flag, nargs="+", metavar=shown_choices,
                           help=text + " (default: none)", **common)
    elif choices:
        values = [*choices, *(("none",) if optional else ())]
        group.add_argument(flag, type=_converter("str", optional), choices=(
            *choices, *((None,) if optional else ())), metavar="{" + ",".join(values) + "}",
            help=text + shown, **common)
    else:
        group.add_argument(flag, type=_converter(kind, optional), help=text + shown,
                           metavar=f.name.split("_")[-1].upper() + ("|none" if optional
                                                                     else ""), **common)


# Typed settings of one verb that are not part of a run, given as flags the same way.
FLAG_ONLY_SECTIONS = {"tune": TuneConfig, "distill": DistillConfig, "inference": InferenceConfig,
                      "serve": ServeSettings, "audit": AuditConfig}


def _given(args: argparse.Namespace, section: type) -> dict[str, Any]:
    """The settings of `section` (a config dataclass) typed on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(section)
            if hasattr(args, f.name)}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The config settings typed on the command line."""
    names = {f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False))


# ----------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> None:
    from sentitune.distributed import is_main
    from sentitune.run import Run
    from sentitune.tracking import summary as tracking_summary
    from sentitune.training import train

    def announce(splits) -> None:
        how = "given" if args.__dict__.get("task") else "inferred"
        print(f"task: {splits.task} ({how}); {len(splits.labels)} labels: "
              f"{', '.join(splits.labels)}; {len(splits.train):,} training and "
              f"{len(splits.validation):,} validation rows", flush=True)

    result = train(args.config, args.output, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.quiet, on_data=announce, **_settings(args))
    if not is_main():
        return  # under torchrun / accelerate launch, rank 0 speaks for every process
    v, metric = result.metrics["validation"], result.metrics["selection_metric"]
    print(f"run saved to {result.run_dir}: validation {metric} {v[metric]:.4f}, accuracy "
          f"{v['accuracy']:.4f} (best epoch {result.metrics['best_epoch']})")
    for line in tracking_summary(Run.open(result.run_dir)):
        print(line)


def cmd_data(args: argparse.Namespace) -> None:
    from sentitune.dataset.explore import data, summary

    settings = _settings(args)
    settings.pop("model")  # the tokenizer to measure with, not a run setting
    if args.dataset_positional:
        settings["dataset"] = args.dataset_positional
    result = data(config=args.config, output=args.output, model=args.model,
                  progress=not args.quiet, **settings)
    print("\n".join(summary(result.report)))  # everything else is in data_report.json
    print(f"report saved to {result.output}/data_report.json and {result.output}/lengths.png")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from sentitune.evaluation.evaluator import evaluate

    result = evaluate(args.run_dir, args.data, split=args.split, output=args.output,
                      text_column=args.text_column, label_column=args.label_column,
                      slices=args.slice, target_accuracy=args.target_accuracy,
                      review_queue=args.review_queue, behavioral=args.behavioral,
                      **_given(args, InferenceConfig))
    m = result.metrics
    shown = {k: m[k] for k in ("accuracy", "f1", "precision", "recall", "loss", "n",
                               "false_positives", "false_negatives", "f1_macro", "f1_weighted",
                               "f1_micro", "f1_samples", "exact_match", "hamming_loss",
                               "label_cardinality_true", "label_cardinality_pred") if k in m}
    _print_json(shown)
    review = m["review"]
    print(f"review threshold {review['threshold']:.4f} ({review['source']}): accepts "
          f"{review['coverage']:.1%}, {review['queued']} to review")
    if "overall_failure_rate" in m["behavioral"]:
        by_capability = ", ".join(f"{name} {rate:.0%}" for name, rate in
                                  m["behavioral"].get("capabilities", {}).items())
        print(f"behavioural tests: {m['behavioral']['overall_failure_rate']:.1%} of cases fail "
              f"({by_capability}; details: `sentitune check`)")
    if result.review_queue:
        print(f"review queue written to {result.review_queue}")
    print(f"evaluation saved to {result.output} (report.html, metrics.json, errors.jsonl)")


def cmd_check(args: argparse.Namespace) -> int:
    from sentitune.evaluation.evaluator import check, check_summary

    result = check(args.run_dir, args.output, max_failure_rate=args.max_failure_rate,
                   examples=args.examples, **_given(args, InferenceConfig))
    print("\n".join(check_summary(result.results)))
    print(f"results saved to {result.output}")
    if result.failed:
        print(f"FAILED: {len(result.failed)} test(s) above --max-failure-rate "
              f"{args.max_failure_rate}: {', '.join(result.failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_predict(args: argparse.Namespace) -> None:
    from sentitune.dataset.splits import replace_surrogates
    from sentitune.inference.scoring import predict, score_file

    # Bytes on the command line that are not UTF-8 reach Python as lone surrogates, which
    # nothing can print: they become U+FFFD, as in files.
    runs, texts = [args.run_dir], [replace_surrogates(text) for text in args.texts]
    while texts and Run.looks_like_run(texts[0]):  # `predict RUN RUN2 "text"`: an ensemble
        runs.append(texts.pop(0))
    settings = _given(args, InferenceConfig)
    if args.input is None:
        if args.engine != "local" or args.output is not None:
            raise SentituneError("--engine and --output go with --input FILE")
        for result in predict(runs, texts, **settings):
            print(json.dumps(result, ensure_ascii=False))
        return
    if texts:
        raise SentituneError("give texts or --input FILE, not both")
    if args.output is None:
        raise SentituneError("--input needs --output FILE.jsonl, FILE.csv or FILE.parquet")
    found = score_file(runs, args.input, args.output, text_column=args.text_column,
                       keep_columns=args.keep_columns, engine=args.engine,
                       address=args.address, ray_cpus=args.ray_cpus, actors=args.actors,
                       progress=not args.quiet, **settings)
    how = f" by {found.actors} Ray actors" if found.engine == "ray" else ""
    print(f"{found.texts} rows written to {found.output} from column '{found.text_column}'"
          f"{how} ({found.needs_review} need review, {found.truncated} truncated, "
          f"{found.errors} could not be scored: marked in the output and listed in "
          f"{found.errors_file})")


def cmd_explain(args: argparse.Namespace) -> None:
    from sentitune.inference.explanations import explain, shown

    found = explain(args.run_dir, args.texts, args.method, target=args.target,
                    steps=args.steps, output=args.output, **_given(args, InferenceConfig))
    print("\n".join(map(shown, found)))
    if args.output:
        print(f"explanations written to {args.output}")


def cmd_serve(args: argparse.Namespace) -> None:
    from sentitune.server.app import serve

    # Only the flags given: ServeSettings and InferenceConfig hold the defaults.
    serve(args.run_dir, workers=args.workers, api_key_file=args.api_key_file,
          **_given(args, ServeSettings), **_given(args, InferenceConfig))


def cmd_export(args: argparse.Namespace) -> None:
    from sentitune.exporting.run_export import export

    _print_json(export(args.run_dir, quantize=args.quantize, progress=not args.quiet).report)


def cmd_compare(args: argparse.Namespace) -> None:
    from sentitune.comparison import compare, summary_table

    result = compare(args.config, args.output, runs=args.runs, models=args.models,
                     methods=args.methods, seeds=args.seeds, lr_full=args.lr_full,
                     lr_lora=args.lr_lora, onnx=args.onnx, overwrite=args.overwrite,
                     progress=not args.quiet, **_settings(args))
    print("\n".join(summary_table(result.report)))
    print(result.report["tradeoffs"])
    print(f"comparison saved to {result.output}/compare.md, compare.json and compare.png")


def cmd_tune(args: argparse.Namespace) -> None:
    from sentitune.tuning import tune

    result = tune(args.config, args.output, overwrite=args.overwrite, progress=not args.quiet,
                  **_given(args, TuneConfig), **_settings(args))
    states = [row["state"] for row in result.trials]
    print(f"{len(states)} trials in {result.output} ({states.count('complete')} complete, "
          f"{states.count('pruned')} pruned, {states.count('fail')} failed); this session "
          f"{result.runtime_s:.0f} s")
    if result.best_config is None:
        print("no trial finished yet: run the same command again to resume")
        return
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in result.best_params.items())
    print(f"best: validation {result.metric} {result.best_value:.4f} with {shown}")
    print(f"preset saved to {result.best_config} (train it: sentitune train --config "
          f"{result.best_config}); trials.csv and score_vs_lr.png beside it")


def cmd_distill(args: argparse.Namespace) -> None:
    from sentitune.distillation import distill

    result = distill(args.teachers, args.output, config=args.config, resume=args.resume,
                     overwrite=args.overwrite, progress=not args.quiet,
                     **_given(args, DistillConfig), **_settings(args))
    v, metric = result.metrics["validation"], result.metrics["selection_metric"]
    print(f"student saved to {result.run_dir}: validation {metric} {v[metric]:.4f}, accuracy "
          f"{v['accuracy']:.4f} (best epoch {result.metrics['best_epoch']})")


def cmd_labels(args: argparse.Namespace) -> None:
    from sentitune.labelstore import api

    if args.labels_command == "add":
        found = api.add_texts(args.store, args.source, run=args.run, labels=args.labels,
                              task=args.task, everything=args.everything,
                              text_column=args.text_column)
        print(f"{found['added']} texts added to {found['store']} from column "
              f"'{found['text_column']}' ({found['kind']}; {found['already_in_store']} "
              f"already there, {found['empty']} empty)")
    elif args.labels_command == "stats":
        _print_json(api.label_stats(args.store))
    else:
        done = api.export_labels(args.store, args.output, annotator=args.annotator)
        print(f"{done.rows} labelled texts written to {done.output}"
              + (f"; {done.ties} tied texts left out" if done.ties else ""))


def cmd_select(args: argparse.Namespace) -> None:
    from sentitune.selection import select

    done = select(args.run_dir, args.unlabeled, budget=args.budget, strategy=args.strategy,
                  output=args.output, store=args.store, text_column=args.text_column,
                  seed=args.seed, **_given(args, InferenceConfig))
    print(f"{done.selected} of {done.candidates} unlabeled texts chosen by {args.strategy}, "
          f"written to {done.output}" + (f"; {done.pushed} added to the label store"
                                         if args.store else ""))


def cmd_audit(args: argparse.Namespace) -> None:
    from sentitune.auditing import audit, summary_lines

    print("\n".join(summary_lines(audit(output=args.output, progress=not args.quiet,
                                        **_given(args, AuditConfig)))))


def cmd_presets(_: argparse.Namespace) -> None:
    from sentitune.config import preset_purpose, presets  # an error when none shipped

    names = presets()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {preset_purpose(name)}".rstrip())


# ----------------------------------------------------------------- parser


def _flag(parser, *names: str, **kwargs) -> None:
    """An option with help; a default, when it means something, is shown once."""
    default = kwargs.get("default")
    if default not in (None, False, argparse.SUPPRESS) and "(default" not in kwargs["help"]:
        kwargs["help"] += f" (default: {default})"
    parser.add_argument(*names, **kwargs)


def _run_writing_flags(parser) -> None:
    """What every verb that trains a run directory takes: --resume and --overwrite."""
    _flag(parser, "--resume", action=argparse.BooleanOptionalAction, default=False,
          help="continue an interrupted run from its last checkpoint")
    _flag(parser, "--overwrite", action=argparse.BooleanOptionalAction, default=False,
          help="replace an existing run directory")


def _quiet_flag(parser) -> None:
    _flag(parser, "--quiet", action=argparse.BooleanOptionalAction, default=False,
          help="no progress output")


def _run_dirs_argument(parser, what: str) -> None:
    parser.add_argument("run_dir", nargs="+", metavar="RUN_DIR",
                        help=f"a run directory made by `sentitune train`; several with the "
                             f"same labels are {what} as one ensemble (mean probabilities)")


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
    _flag(q, "--from", dest="source", required=True, metavar="FILE",
          help="CSV/TSV/JSON/JSONL/parquet/TXT file of texts")
    _flag(q, "--run", help="the run whose answers the file holds; a new store takes its labels")
    _flag(q, "--labels", help="a new store's labels without a run, comma-separated")
    _flag(q, "--task", choices=("binary", "multiclass", "multilabel"),
          help="a new store's task with --labels (default: binary for two labels, else "
               "multiclass)")
    _flag(q, "--all", dest="everything", action=argparse.BooleanOptionalAction, default=False,
          help="predict output: every row, not only those flagged needs_review")
    _flag(q, "--text-column", help="text column of the file (default: guessed)")
    q = verbs.add_parser("stats", help="texts, labels per annotator, agreement (Cohen's "
                                       "kappa / Krippendorff's alpha)")
    q.add_argument("store", metavar="STORE", help=store_help)
    q = verbs.add_parser("export", help="one consensus label per text, for training")
    q.add_argument("store", metavar="STORE", help=store_help)
    _flag(q, "--output", required=True, help="file to write (.csv or .jsonl)")
    _flag(q, "--annotator", help="only this annotator's labels (default: the majority of all)")
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
    _flag(p, "--config", help=f"preset name ({', '.join(available_presets())}) or YAML "
                              "file to start from")
    _flag(p, "--output", help="run directory to create (default: runs/DATA-MODEL)")
    _run_writing_flags(p)
    _quiet_flag(p)
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)


def _data_parser(commands) -> None:
    p = commands.add_parser("data", help="exploratory report on a dataset")
    p.add_argument("dataset_positional", nargs="?", metavar="DATA", help=argparse.SUPPRESS)
    _flag(p, "--config", help="preset whose data settings to start from")
    _flag(p, "--output", help="folder for data_report.json and lengths.png "
                              "(default: runs/data-DATA)")
    _flag(p, "--model", default="minilm", help="tokenizer to measure lengths with")
    _quiet_flag(p)
    _add_config_flags(p, ("data",))
    p.set_defaults(func=cmd_data)


def _evaluate_parser(commands) -> None:
    p = commands.add_parser("evaluate", help="metrics of a run on a labelled split")
    _run_dirs_argument(p, "evaluated")
    _flag(p, "--data", help="name or file (default: the run's own dataset)")
    _flag(p, "--split", choices=SPLITS,
          help="split to score (default: test if the data has one, else the run's own "
               "validation rows; never its training rows unless asked)")
    _flag(p, "--output", help="folder for the results (default: RUN_DIR/eval-DATA-SPLIT, or "
                              "RUN_DIR/eval-DATA for a plain file)")
    _flag(p, "--text-column", help="text column of --data (default: guessed)")
    _flag(p, "--label-column", help="label column of --data (default: guessed)")
    _flag(p, "--slice", action="append", default=[], metavar="NAME=REGEX",
          help="extra slice of texts matching REGEX (case-insensitive); repeatable")
    _flag(p, "--target-accuracy", type=float,
          help="pick the review threshold reaching this accuracy on the run's validation "
               "split and save it as the run's default")
    _flag(p, "--review-queue", metavar="FILE",
          help="write the examples below the review threshold, most uncertain first "
               "(.jsonl or .csv)")
    _flag(p, "--behavioral", action=argparse.BooleanOptionalAction, default=None,
          help="run the behavioural tests (default: on binary negative/positive runs)")
    _add_config_flags(p, ("inference",), only=EVALUATE_INFERENCE)
    p.set_defaults(func=cmd_evaluate)


def _check_parser(commands) -> None:
    p = commands.add_parser("check", help="behavioural tests of a binary run")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    _flag(p, "--output", help="JSON file for the results "
                              "(default: RUN_DIR/check/behavioral.json)")
    _flag(p, "--max-failure-rate", type=float,
          help="exit with status 1 when any test fails more often than this")
    _flag(p, "--examples", type=int, default=5, help="failing cases kept per test")
    _add_config_flags(p, ("inference",), only=CHECK_INFERENCE)
    p.set_defaults(func=cmd_check)


def _predict_parser(commands) -> None:
    from sentitune.inference.rows import ENGINES, OUTPUT_SUFFIXES

    p = commands.add_parser("predict", help="classify texts or a file")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    p.add_argument("texts", nargs="*", help="texts to classify; run directories right after "
                                            "the first join it in an ensemble")
    _flag(p, "--input", help="file to score, or a folder of them: CSV/TSV/JSON/JSONL/"
                             "parquet/TXT (optionally .gz); every row gets an output row")
    _flag(p, "--output", help=f"where to write results ({'/'.join(OUTPUT_SUFFIXES)}); rows "
                              "that cannot be scored also go to OUTPUT.errors.jsonl")
    _flag(p, "--text-column", help="column to score (default: the run's training column "
                                   "if present, else guessed)")
    _flag(p, "--keep-columns", action=argparse.BooleanOptionalAction, default=True,
          help="copy the input's other columns (e.g. an id) into the output")
    _quiet_flag(p)
    _flag(p, "--engine", default="local", choices=ENGINES,
          help="local: this process; ray: Ray Data over a pool of model actors "
               "(pip install 'sentitune[ray]')")
    _flag(p, "--address", help="--engine ray: the Ray cluster to run on, e.g. "
                               "ray://head:10001 (default: start a local Ray)")
    _flag(p, "--ray-cpus", type=int,
          help="--engine ray: CPUs of the local Ray (default: all of this machine's)")
    _flag(p, "--actors", type=int,
          help="--engine ray: model replicas, one CPU each (default: one per Ray CPU)")
    _add_config_flags(p, ("inference",))
    p.set_defaults(func=cmd_predict)


def _explain_parser(commands) -> None:
    from sentitune.inference.explanations import METHODS

    p = commands.add_parser("explain", help="which words made a run choose its label")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    p.add_argument("texts", nargs="+", help="texts to explain")
    _flag(p, "--method", default="integrated-gradients", choices=METHODS,
          help="integrated-gradients (captum; faithful), gradient-x-input (one backward "
               "pass) or occlusion (leave one word out; any backend)")
    _flag(p, "--target", help="label to explain (default: the predicted one)")
    _flag(p, "--steps", type=int, default=32, help="integrated-gradients: path steps")
    _flag(p, "--output", help="also write the explanations to this .jsonl file")
    _add_config_flags(p, ("inference",), only=("backend", "batch_size"))
    p.set_defaults(func=cmd_explain)


def _serve_parser(commands) -> None:
    p = commands.add_parser("serve", help="HTTP API and web page for a run")
    _run_dirs_argument(p, "served")
    _flag(p, "--workers", type=int, default=1, help="processes, each with its own model")
    _flag(p, "--api-key-file", metavar="PATH",
          help="require the key written on this file's first line (kept out of `ps`)")
    _add_config_flags(p, ("serve",))
    _add_config_flags(p, ("inference",), skip=("batch_size",))  # --max-batch-size serves
    p.set_defaults(func=cmd_serve)


def _export_parser(commands) -> None:
    from sentitune.run import QUANTIZE_CHOICES

    p = commands.add_parser("export", help="export a run to ONNX for fast CPU inference")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    _flag(p, "--quantize", choices=QUANTIZE_CHOICES, help="also write an int8 model")
    _quiet_flag(p)
    p.set_defaults(func=cmd_export)


def _compare_parser(commands) -> None:
    p = commands.add_parser("compare", help="models and methods (full fine-tuning, LoRA) under "
                                            "identical settings")
    _flag(p, "--runs", nargs="+", metavar="RUN_DIR",
          help="compare finished run directories instead of training new ones")
    _flag(p, "--config", help="preset or YAML file every run starts from")
    _flag(p, "--models", help="models to compare, e.g. minilm,distilbert,roberta (aliases, hub "
                              "ids or local folders; default: the one --model)")
    _flag(p, "--methods", help="methods to compare, e.g. full,lora (default: full,lora with one "
                               "model, the preset's method with --models)")
    _flag(p, "--seeds", default="42,43,44", help="seeds; each method runs on each")
    _flag(p, "--lr-full", type=float,
          help="learning rate of full fine-tuning (default: the preset's, else 5e-5)")
    _flag(p, "--lr-lora", type=float, help="learning rate of LoRA (default: 2e-3)")
    _flag(p, "--output", help="folder for compare.* and runs/ (default: "
                              "runs/compare-DATA-MODELS)")
    _flag(p, "--overwrite", action=argparse.BooleanOptionalAction, default=False,
          help="retrain runs already in OUTPUT/runs/ (default: reuse matching ones)")
    _flag(p, "--onnx", action=argparse.BooleanOptionalAction, default=False,
          help="export runs without an ONNX model first, so ONNX speed is measured too")
    _quiet_flag(p)
    _add_config_flags(p, skip=("method", "learning_rate", "seed"))
    p.set_defaults(func=cmd_compare)


def _tune_parser(commands) -> None:
    p = commands.add_parser("tune", help="search the learning rate and recipe with Optuna")
    _flag(p, "--config", help=f"preset name ({', '.join(available_presets())}) or YAML file "
                              "every trial starts from")
    _flag(p, "--output", help="tune directory: study.db, best.yaml, trials.csv, "
                              "score_vs_lr.png; an existing one resumes "
                              "(default: runs/tune-DATA-MODEL-METHOD)")
    _flag(p, "--overwrite", action=argparse.BooleanOptionalAction, default=False,
          help="start a new study instead of resuming the one in --output")
    _quiet_flag(p)
    _add_config_flags(p, ("tune", *SECTIONS))
    p.set_defaults(func=cmd_tune)


def _distill_parser(commands) -> None:
    p = commands.add_parser("distill", help="teach a smaller, faster student from fine-tuned "
                                            "runs (soft targets, unlabeled texts)")
    p.add_argument("teachers", nargs="+", metavar="TEACHER_RUN",
                   help="run directories with the same labels; several teach as an ensemble")
    _flag(p, "--output", help="student run directory (default: TEACHER_RUN-student)")
    _flag(p, "--config", help="distill preset (sst2-minilm-student3, ...) or YAML file with "
                              "distill: and training: sections; flags override it")
    _run_writing_flags(p)
    _quiet_flag(p)
    _add_config_flags(p, ("distill", "data", "training"), skip=("method", *LORA_SETTINGS))
    p.set_defaults(func=cmd_distill)


def _select_parser(commands) -> None:
    from sentitune.selection import STRATEGIES

    p = commands.add_parser("select", help="choose the unlabeled texts most worth labelling "
                                           "next (active learning)")
    p.add_argument("run_dir", help="a run directory made by `sentitune train`")
    _flag(p, "--unlabeled", required=True,
          help="file of texts to choose from: CSV/TSV/JSON/JSONL/parquet/TXT")
    _flag(p, "--budget", type=int, required=True, help="how many texts to choose")
    _flag(p, "--strategy", default="margin", choices=STRATEGIES,
          help="margin or entropy (the model's least sure), random, or diverse (uncertain "
               "and spread over the model's embedding space by k-means)")
    _flag(p, "--output", required=True, help="JSONL file: text, the model's answer, rank")
    _flag(p, "--store", help="also add the chosen texts to this label store (file or URL), "
                             "leaving out texts it already holds")
    _flag(p, "--text-column", help="text column of --unlabeled (default: guessed)")
    _flag(p, "--seed", type=int, default=0, help="seed of random and diverse")
    _add_config_flags(p, ("inference",), only=("backend", "batch_size"))
    p.set_defaults(func=cmd_select)



def _audit_parser(commands) -> None:
    p = commands.add_parser("audit", help="find training labels that look wrong (cleanlab on "
                                          "out-of-fold probabilities) and conflicting "
                                          "duplicates")
    _flag(p, "--output", help="folder for label_issues.jsonl, summary.html, cleaned.csv "
                              "(default: runs/audit-DATA)")
    _quiet_flag(p)
    _add_config_flags(p, ("audit",))
    p.set_defaults(func=cmd_audit)


def _boolean_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions if isinstance(action,
            argparse.BooleanOptionalAction) for option in action.option_strings
            if not option.startswith("--no-")}


def _alias(arg: str) -> str:
    """An older flag spelling (`--dataset x`, `--dataset=x`) as today's."""
    name, eq, value = arg.partition("=")
    return ALIASES.get(name, name) + eq + value


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse with flags and free texts in any order (argparse's intermixed parsing, per
    verb, since it does not mix with subcommands)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if not argv or argv[0] not in commands.choices:
        return parser.parse_args(argv)  # --help, --version, or an error listing the verbs
    sub = commands.choices[argv[0]]
    rest = [_alias(arg) for arg in _boolean_words(argv[1:], _boolean_flags(sub))]
    # A verb with actions (`labels add`) lets each action parse; its flags still go anywhere.
    nested = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
    args = sub.parse_args(rest) if nested else sub.parse_intermixed_args(rest)
    args.command = argv[0]
    return args


def _show_warning(message, *_args, **_kwargs) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version, or a mistake already explained
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with warnings.catch_warnings(), console.cli_spelling():
            # Each warning once, as one line on stderr; library deprecations are not the
            # user's business.
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.showwarning = _show_warning
            code = args.func(args)  # a command may return an exit status, e.g. failed checks
    except SentituneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (`| head`) has what it wanted. Point stdout at /dev/null so the
        # interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
