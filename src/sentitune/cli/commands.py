"""One `cmd_VERB` per verb: call the API function of the same name, print what it made."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sentitune.cli.flags import given, typed_settings
from sentitune.config import AuditConfig, DistillConfig, InferenceConfig, TuneConfig
from sentitune.errors import SentituneError
from sentitune.run import Run
from sentitune.server.settings import ServeSettings


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False))


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
                   progress=not args.quiet, on_data=announce, **typed_settings(args))
    if not is_main():
        return  # under torchrun / accelerate launch, rank 0 speaks for every process
    v, metric = result.metrics["validation"], result.metrics["selection_metric"]
    print(f"run saved to {result.run_dir}: validation {metric} {v[metric]:.4f}, accuracy "
          f"{v['accuracy']:.4f} (best epoch {result.metrics['best_epoch']})")
    for line in tracking_summary(Run.open(result.run_dir)):
        print(line)


def cmd_data(args: argparse.Namespace) -> None:
    from sentitune.dataset.explore import data, summary

    settings = typed_settings(args)
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
                      **given(args, InferenceConfig))
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
                   examples=args.examples, **given(args, InferenceConfig))
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
    settings = given(args, InferenceConfig)
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
                    steps=args.steps, output=args.output, **given(args, InferenceConfig))
    print("\n".join(map(shown, found)))
    if args.output:
        print(f"explanations written to {args.output}")


def cmd_serve(args: argparse.Namespace) -> None:
    from sentitune.server.app import serve

    # Only the flags given: ServeSettings and InferenceConfig hold the defaults.
    serve(args.run_dir, workers=args.workers, api_key_file=args.api_key_file,
          **given(args, ServeSettings), **given(args, InferenceConfig))


def cmd_export(args: argparse.Namespace) -> None:
    from sentitune.exporting.run_export import export

    _print_json(export(args.run_dir, quantize=args.quantize, progress=not args.quiet).report)


def cmd_compare(args: argparse.Namespace) -> None:
    from sentitune.comparison import compare, summary_table

    result = compare(args.config, args.output, runs=args.runs, models=args.models,
                     methods=args.methods, seeds=args.seeds, lr_full=args.lr_full,
                     lr_lora=args.lr_lora, onnx=args.onnx, overwrite=args.overwrite,
                     progress=not args.quiet, **typed_settings(args))
    print("\n".join(summary_table(result.report)))
    print(result.report["tradeoffs"])
    print(f"comparison saved to {result.output}/compare.md, compare.json and compare.png")


def cmd_tune(args: argparse.Namespace) -> None:
    from sentitune.tuning import tune

    result = tune(args.config, args.output, overwrite=args.overwrite, progress=not args.quiet,
                  **given(args, TuneConfig), **typed_settings(args))
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
                     **given(args, DistillConfig), **typed_settings(args))
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
                  seed=args.seed, **given(args, InferenceConfig))
    print(f"{done.selected} of {done.candidates} unlabeled texts chosen by {args.strategy}, "
          f"written to {done.output}" + (f"; {done.pushed} added to the label store"
                                         if args.store else ""))


def cmd_audit(args: argparse.Namespace) -> None:
    from sentitune.auditing import audit, summary_lines

    print("\n".join(summary_lines(audit(output=args.output, progress=not args.quiet,
                                        **given(args, AuditConfig)))))


def cmd_presets(_: argparse.Namespace) -> None:
    from sentitune.config import preset_purpose, presets  # an error when none shipped

    names = presets()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {preset_purpose(name)}".rstrip())
