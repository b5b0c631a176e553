"""Command line: a thin shell over the Python API.

Every `train` flag is generated from the config dataclasses (same names, same help),
so the CLI, YAML presets and the saved config.yaml can never drift apart. User
mistakes print one line and exit 2; nothing here holds logic of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from sentitune import __version__
from sentitune.config import (
    FIELD_SECTION,
    SECTIONS,
    RunConfig,
    available_presets,
    load_preset,
    validate,
)
from sentitune.errors import SentituneError

# The share of torch's labels below which `export` warns that the int8 model is, in effect,
# a different classifier (the goal the int8 export is built and benchmarked for).
INT8_MIN_AGREEMENT = 0.99


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{value}'")


def _add_config_flags(parser: argparse.ArgumentParser, sections=tuple(SECTIONS),
                      skip: tuple[str, ...] = ()) -> None:
    for section in sections:
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(SECTIONS[section]):
            if f.name in skip:
                continue
            flag = "--" + f.name.replace("_", "-")
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if "bool" in kind:
                convert = _bool
            elif "int" in kind:
                convert = int
            elif "float" in kind:
                convert = float
            else:
                convert = str
            default = f.default if f.default is not dataclasses.MISSING else None
            group.add_argument(flag, dest=f.name, type=convert, default=None,
                               help=f"{f.metadata.get('help', '')} (default: {default})")


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    base = load_preset(args.config) if args.config else RunConfig()
    overrides: dict[str, Any] = {}
    for section in SECTIONS.values():
        for f in dataclasses.fields(section):
            value = getattr(args, f.name, None)
            if value is not None:
                overrides[f.name] = value
    return validate(base.replace(**overrides))


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False))


# ----------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> None:
    from sentitune.train import train

    config = _config_from_args(args)
    output = Path(args.output or f"runs/{Path(config.data.dataset).stem}-{config.model.model}")

    def announce(splits) -> None:
        how = "given" if config.data.task else "inferred"
        print(f"task: {splits.task} ({how}); {len(splits.labels)} labels: "
              f"{', '.join(splits.labels)}; {len(splits.train):,} training and "
              f"{len(splits.validation):,} validation rows", flush=True)

    result = train(config, output, resume=args.resume, overwrite=args.overwrite,
                   progress=not args.quiet, on_data=announce)
    v = result.metrics["validation"]
    print(f"run saved to {result.run_dir}: validation accuracy {v['accuracy']:.4f}, "
          f"F1 {v['f1']:.4f} (best epoch {result.metrics['best_epoch']})")


def cmd_data(args: argparse.Namespace) -> None:
    from sentitune.explore import data_report

    config = _config_from_args(args).data
    output = Path(args.output or f"runs/data-{Path(config.dataset).stem}")
    report = data_report(config, args.model or "minilm", output)
    _print_json(report)
    print(f"report saved to {output}/data_report.json and {output}/lengths.png")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from sentitune.evaluate import evaluate, parse_slice

    result = evaluate(args.run_dir, args.data, split=args.split, output=args.output,
                      text_column=args.text_column, label_column=args.label_column,
                      batch_size=args.batch_size,
                      extra_slices=[parse_slice(spec) for spec in args.slice],
                      target_accuracy=args.target_accuracy, review_queue=args.review_queue,
                      behavioral=args.behavioral)
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
        print(f"behavioural tests: {m['behavioral']['overall_failure_rate']:.1%} of cases fail "
              "(details: `sentitune check`)")
    if result.review_queue:
        print(f"review queue written to {result.review_queue}")
    print(f"evaluation saved to {result.output} (report.html, metrics.json, errors.jsonl)")


def cmd_check(args: argparse.Namespace) -> int:
    from sentitune.evaluate import check, check_summary

    result = check(args.run_dir, args.output, max_failure_rate=args.max_failure_rate,
                   max_examples=args.examples, batch_size=args.batch_size)
    print("\n".join(check_summary(result.results)))
    print(f"results saved to {result.output}")
    if result.failed:
        print(f"FAILED: {len(result.failed)} test(s) above --max-failure-rate "
              f"{args.max_failure_rate}: {', '.join(result.failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_predict(args: argparse.Namespace) -> None:
    from sentitune.predict import Classifier, predict_file

    if not args.texts and not args.input:
        raise SentituneError("give texts to classify or --input FILE")
    classifier = Classifier.from_pretrained(args.run_dir, backend=args.backend)
    if args.input:
        if not args.output:
            raise SentituneError("--input needs --output FILE.jsonl or FILE.csv")
        counts = predict_file(classifier, Path(args.input), Path(args.output),
                              text_column=args.text_column, batch_size=args.batch_size,
                              review_threshold=args.review_threshold,
                              threshold=args.threshold, progress=not args.quiet)
        print(f"{counts['texts']} predictions written to {args.output} "
              f"({counts['needs_review']} need review, {counts['empty']} empty lines skipped)")
        return
    texts = [t for t in args.texts if t.strip()]
    if not texts:
        raise SentituneError("all given texts are empty; pass some words to classify")
    for result in classifier.predict(texts, batch_size=args.batch_size,
                                     review_threshold=args.review_threshold,
                                     threshold=args.threshold):
        print(json.dumps(result, ensure_ascii=False))


def cmd_serve(args: argparse.Namespace) -> None:
    from sentitune.serve import ServeSettings, run_server

    # Only the flags given: ServeSettings holds the defaults (and the API key's env fallback).
    given = {name: value for name in ("host", "port", "max_batch_size", "max_wait_ms",
                                      "review_threshold", "api_key")
             if (value := getattr(args, name)) not in (None, "")}
    settings = ServeSettings(micro_batching=not args.no_batching, **given)
    run_server(args.run_dir, settings, backend=args.backend, workers=args.workers)


def cmd_export(args: argparse.Namespace) -> None:
    from sentitune.export import export_run

    report = export_run(Path(args.run_dir), quantize=args.quantize)
    _print_json(report)
    int8 = report["agreement"].get("onnx-int8")
    if int8 is not None and int8["label_agreement"] < INT8_MIN_AGREEMENT:
        print(f"warning: the int8 model gives the torch label on only "
              f"{int8['label_agreement']:.1%} of {report['agreement_texts']}; "
              "serve this run with --backend onnx (fp32) instead", file=sys.stderr)


def cmd_compare(args: argparse.Namespace) -> None:
    from sentitune.compare import compare, compare_runs, parse_methods, parse_seeds, summary_table

    if args.runs:
        given = sorted(name for name in FIELD_SECTION.keys() | {"config", "methods", "seeds",
                                                                "lr_full", "lr_lora"}
                       if getattr(args, name, None) is not None)
        if given:
            flags = ", ".join("--data" if n == "dataset" else "--" + n.replace("_", "-")
                              for n in given)
            raise SentituneError(f"--runs compares finished runs as they are; drop {flags}")
        result = compare_runs(args.runs, Path(args.output or "runs/compare"),
                              progress=not args.quiet)
    else:
        config = _config_from_args(args)
        output = Path(args.output or f"runs/compare-{Path(config.data.dataset).stem}-"
                                     f"{Path(config.model.model).name}")
        choices: dict[str, Any] = {}
        if args.methods:
            choices["methods"] = parse_methods(args.methods)
        if args.seeds:
            choices["seeds"] = parse_seeds(args.seeds)
        rates = {m: r for m, r in (("full", args.lr_full), ("lora", args.lr_lora)) if r}
        result = compare(config, output, learning_rates=rates, overwrite=args.overwrite,
                         progress=not args.quiet, **choices)
    print("\n".join(summary_table(result.report)))
    print(result.report["tradeoffs"])
    print(f"comparison saved to {result.output}/compare.md, compare.json and compare.png")


def cmd_presets(_: argparse.Namespace) -> None:
    for name in available_presets():
        print(name)


# ----------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentitune",
        description="Fine-tune transformers into sentiment classifiers and put them to work.")
    parser.add_argument("--version", action="version", version=f"sentitune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="fine-tune a model into a run directory")
    p.add_argument("--config", help=f"preset name or YAML file ({', '.join(available_presets())})")
    p.add_argument("--output", help="run directory to create (default: runs/DATA-MODEL)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("data", help="exploratory report on a dataset")
    p.add_argument("dataset", help="built-in name, file or aclImdb/ folder")
    p.add_argument("--config", help="preset whose data settings to start from")
    p.add_argument("--output", help="folder for data_report.json and lengths.png")
    p.add_argument("--model", help="tokenizer to measure lengths with (default: minilm)")
    _add_config_flags(p, ("data",), skip=("dataset",))
    p.set_defaults(func=cmd_data)

    p = commands.add_parser("evaluate", help="metrics of a run on a labelled split")
    p.add_argument("run_dir")
    p.add_argument("--data", help="name or file (default: the run's training dataset)")
    p.add_argument("--split", help="split to score (default: test, else validation)")
    p.add_argument("--output", help="folder for the results (default: RUN_DIR/eval-DATA-SPLIT)")
    p.add_argument("--text-column")
    p.add_argument("--label-column")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--slice", action="append", default=[], metavar="NAME=REGEX",
                   help="extra slice of texts matching REGEX (case-insensitive); repeatable")
    p.add_argument("--target-accuracy", type=float,
                   help="pick the review threshold reaching this accuracy on the run's "
                        "validation split and save it as the run's default")
    p.add_argument("--review-queue", metavar="FILE",
                   help="write the examples below the review threshold, most uncertain "
                        "first (.jsonl or .csv)")
    p.add_argument("--behavioral", action=argparse.BooleanOptionalAction, default=None,
                   help="run the behavioural tests (default: on binary negative/positive runs)")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("check", help="behavioural tests of a binary run")
    p.add_argument("run_dir")
    p.add_argument("--output", help="JSON file for the results "
                                    "(default: RUN_DIR/check/behavioral.json)")
    p.add_argument("--max-failure-rate", type=float,
                   help="exit with status 1 when any test fails more often than this")
    p.add_argument("--examples", type=int, default=5, help="failing cases kept per test")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=cmd_check)

    p = commands.add_parser("predict", help="classify texts or a file")
    p.add_argument("run_dir")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--input", help="CSV/TSV/JSONL/TXT file to score")
    p.add_argument("--output", help="where to write results (.jsonl or .csv)")
    p.add_argument("--text-column")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--review-threshold", type=float,
                   help="flag predictions whose probability is below this (default: the run's)")
    p.add_argument("--threshold", type=float,
                   help="multi-label runs: one decision threshold for every label instead of "
                        "the per-label ones tuned on validation")
    p.add_argument("--backend", default="torch",
                   help="torch, onnx or onnx-int8 (the last two after `sentitune export`)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("serve", help="HTTP API and web page for a run")
    p.add_argument("run_dir")
    p.add_argument("--host", help="address to bind (default: 127.0.0.1, local only)")
    p.add_argument("--port", type=int, help="(default: 8000)")
    p.add_argument("--workers", type=int, default=1, help="processes, each with its own model")
    p.add_argument("--backend", default="torch", help="torch, onnx or onnx-int8")
    p.add_argument("--api-key", help="require this key (X-API-Key or Bearer); "
                                     "default: $SENTITUNE_API_KEY if set")
    p.add_argument("--max-batch-size", type=int,
                   help="most texts grouped into one forward pass (default: 32)")
    p.add_argument("--max-wait-ms", type=float,
                   help="longest a micro-batch waits for more requests (default: 5)")
    p.add_argument("--no-batching", action="store_true", help="one forward pass per request")
    p.add_argument("--review-threshold", type=float)
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("export", help="export a run to ONNX for fast CPU inference")
    p.add_argument("run_dir")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--quantize", choices=["int8"], help="also write a dynamic int8 model")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("compare", help="full fine-tuning vs LoRA under identical settings")
    p.add_argument("--runs", nargs="+", metavar="RUN_DIR",
                   help="compare finished run directories instead of training new ones")
    p.add_argument("--data", dest="dataset", help="built-in name, file or aclImdb/ folder")
    p.add_argument("--config", help="preset or YAML file every run starts from")
    p.add_argument("--methods", help="methods to compare (default: full,lora)")
    p.add_argument("--seeds", help="seeds; each method runs on each (default: 42,43,44)")
    p.add_argument("--lr-full", type=float,
                   help="learning rate of full fine-tuning (default: the preset's, else 5e-5)")
    p.add_argument("--lr-lora", type=float, help="learning rate of LoRA (default: 5e-4)")
    p.add_argument("--output", help="folder for compare.* and runs/ (default: "
                                     "runs/compare-DATA-MODEL)")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain runs already in OUTPUT/runs/ (default: reuse matching ones)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_config_flags(p, skip=("dataset", "method", "learning_rate", "seed"))
    p.set_defaults(func=cmd_compare)

    p = commands.add_parser("presets", help="list the YAML presets")
    p.set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.formatwarning = lambda message, *_a, **_k: f"warning: {message}\n"
    try:
        code = args.func(args)  # a command may return an exit status, e.g. failed checks
    except SentituneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
