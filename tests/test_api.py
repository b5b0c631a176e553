"""The public surface: each CLI verb is a function of the same name and options, each
callable any number of times in one process; the run directory is read through `Run`."""

import inspect
import json
import os
import stat
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO, assert_one_line_error, run_cli, tiny_config

import sentitune
from sentitune import schema
from sentitune.cli import build_parser
from sentitune.errors import SentituneError
from sentitune.run import Run
from sentitune.server import ServeSettings

VERBS = ("train", "data", "evaluate", "check", "predict", "export", "serve", "compare",
         "tune", "distill", "audit", "explain", "select", "presets")
# `sentitune labels ACTION`: each action is a function of its own name.
LABEL_ACTIONS = {"add": "add_texts", "stats": "label_stats", "export": "export_labels"}


def _fields(*classes) -> set[str]:
    return {name for cls in classes for name in cls.__dataclass_fields__}


# The typed settings each verb's function takes as **settings, by verb.
RUN_SECTIONS = (sentitune.DataConfig, sentitune.ModelConfig, sentitune.TrainingConfig)
VERB_SETTINGS = {
    "train": _fields(*RUN_SECTIONS), "data": _fields(sentitune.DataConfig),
    "compare": _fields(*RUN_SECTIONS), "tune": _fields(*RUN_SECTIONS),
    "distill": _fields(*RUN_SECTIONS, sentitune.DistillConfig),
    "evaluate": _fields(sentitune.InferenceConfig), "check": _fields(sentitune.InferenceConfig),
    "predict": _fields(sentitune.InferenceConfig),
    "serve": _fields(sentitune.InferenceConfig, ServeSettings),
    "explain": _fields(sentitune.InferenceConfig), "select": _fields(sentitune.InferenceConfig),
    "audit": _fields(sentitune.AuditConfig),
}
# predict's file options belong to its file-scoring function.
FILE_OPTIONS = {"input", "output", "text_column", "keep_columns", "engine", "address",
                "ray_cpus", "actors", "quiet"}


def test_every_verb_is_a_function_with_the_cli_options():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == set(VERBS) | {"labels"}
    for verb in VERBS:
        function = getattr(sentitune, verb)
        assert callable(function) and not inspect.ismodule(function), verb
        params = inspect.signature(function).parameters
        takes_settings = any(p.kind == p.VAR_KEYWORD for p in params.values())
        file_params = inspect.signature(sentitune.score_file).parameters
        for action in commands[verb]._actions:
            dest = action.dest
            if dest in ("help", "run_dir", "dataset_positional") or action.help == "==SUPPRESS==":
                continue
            # By the flag's own name: `quiet=`, not only the function's `progress=` (issue 27).
            if verb == "predict" and dest in FILE_OPTIONS:
                assert dest in file_params, (verb, dest)
                continue
            assert dest in params or (takes_settings and dest in VERB_SETTINGS.get(verb, ())), \
                (verb, dest)
    actions = next(a for a in commands["labels"]._actions if a.dest == "labels_command").choices
    assert set(actions) == set(LABEL_ACTIONS)
    for action, function_name in LABEL_ACTIONS.items():
        params = inspect.signature(getattr(sentitune, function_name)).parameters
        for option in actions[action]._actions:
            assert option.dest == "help" or option.dest in params, (action, option.dest)


def test_cli_option_names_work_in_python(tiny_run_dir, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a superb film", "awful and dull"]}).to_csv(source, index=False)
    quiet = sentitune.score_file(tiny_run_dir, source, tmp_path / "quiet.jsonl", quiet=True)
    loud = sentitune.score_file(tiny_run_dir, source, tmp_path / "loud.jsonl", progress=False)
    assert quiet.output.read_text() == loud.output.read_text()
    with pytest.raises(TypeError, match="quiet= or progress=, not both"):
        sentitune.score_file(tiny_run_dir, source, tmp_path / "both.jsonl", quiet=True,
                             progress=False)


def test_public_functions_survive_repeated_calls(tmp_path, tiny_bert, sentiment_csv):
    """Notebook users re-run cells: a submodule import must never replace a function."""
    import sentitune.evaluation.evaluator  # noqa: F401  (the imports that used to shadow)
    import sentitune.training  # noqa: F401

    config = tiny_config(tiny_bert, sentiment_csv, epochs=1.0)
    runs = [sentitune.train(config, tmp_path / name, progress=False).run_dir
            for name in ("a", "b")]
    assert all(Run.open(run).metrics["epochs_run"] == 1 for run in runs)
    for i in range(2):
        result = sentitune.evaluate(runs[0], output=tmp_path / f"eval{i}", behavioral=False)
        assert result.metrics["split"] == "validation"
        answers = sentitune.predict(runs[i], ["a superb film", "awful and dull"])
        assert answers == sentitune.predict(runs[i], ["a superb film", "awful and dull"])
        assert len(sentitune.presets()) >= 9
        report = sentitune.data(str(sentiment_csv), output=tmp_path / f"data{i}",
                                model=str(tiny_bert), max_length=32)
        assert report.report["splits"]["train"]["rows"] == 216
        assert sentitune.check(runs[0], tmp_path / f"check{i}.json").results["tests"]
        assert sentitune.export(runs[0]).report["agreement"]["onnx"]["label_agreement"] == 1.0
    assert callable(sentitune.train) and callable(sentitune.evaluate)


def test_flags_and_texts_in_any_order(capsys, tiny_run_dir):
    first = run_cli(capsys, "predict", str(tiny_run_dir), "a superb film", "--batch-size", "1",
                    "awful and dull", "--review-threshold", "0.9")
    again = run_cli(capsys, "predict", "--review-threshold", "0.9", str(tiny_run_dir),
                    "--batch-size", "1", "a superb film", "awful and dull")
    assert first[0] == again[0] == 0 and first[1] == again[1]
    assert len(first[1].strip().splitlines()) == 2


def test_one_boolean_style_with_the_old_spelling_kept(capsys):
    parse = build_parser().parse_args
    from sentitune.cli import parse as cli_parse

    assert cli_parse(["train", "--no-clean-html"]).clean_html is False
    assert cli_parse(["train", "--clean-html", "false"]).clean_html is False  # older spelling
    assert cli_parse(["train", "--clean-html"]).clean_html is True
    assert cli_parse(["train", "--dataset", "imdb"]).dataset == "imdb"  # older spelling
    with pytest.raises(SystemExit):
        parse(["predict", "run", "--backend", "tensorrt"])  # choices for every enumeration
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "(default: None)" not in help_text and "guessed. (default" not in help_text


def test_a_preset_setting_can_be_cleared(tmp_path):
    from sentitune.cli import parse

    args = parse(["train", "--config", "sst2-minilm", "--train-samples", "none"])
    config = sentitune.config.make_config(args.config, train_samples=args.train_samples)
    assert sentitune.load_preset("sst2-minilm").data.train_samples == 2000
    assert config.data.train_samples is None  # every row
    assert sentitune.load_preset("sst2-minilm").replace(patience=None).training.patience is None


def test_onnx_scoring_imports_no_torch(tiny_run_dir):
    sentitune.export(tiny_run_dir)
    code = (
        "import sys, sentitune\n"
        f"out = sentitune.predict({str(tiny_run_dir)!r}, ['a superb film'], backend='onnx')\n"
        "assert out[0]['label'] in ('negative', 'positive')\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO / "src")}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_predictions_follow_the_schema_everywhere(tmp_path, tiny_run_dir):
    answers = sentitune.predict(tiny_run_dir, ["a superb film", "<b>awful</b> and dull"])
    for answer in answers:
        schema.SingleLabelPrediction.model_validate(answer)
        assert answer["score"] == answer["probabilities"][answer["label"]]
    # One record per text, a blank one included and marked: results line up with the input.
    marked = sentitune.predict(tiny_run_dir, ["a superb film", "   ", "awful"])
    assert [a["text"] for a in marked] == ["a superb film", "   ", "awful"]
    assert marked[1] == schema.unscored("   ", ["negative", "positive"], "binary", "empty text")
    assert marked[1]["needs_review"] and marked[1]["label"] is None
    assert [marked[0], marked[2]] == answers[:1] + sentitune.predict(tiny_run_dir, ["awful"])
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": [7, 8], "text": ["a superb film", "awful"]}).to_csv(source, index=False)
    found = sentitune.score_file(tiny_run_dir, source, tmp_path / "out.csv", progress=False)
    rows = pd.read_csv(found.output)
    assert list(rows.columns) == ["id", "text", "label", "score", "p_negative", "p_positive",
                                  "needs_review", "truncated", "windows", "error"]
    assert list(rows["id"]) == [7, 8]


def test_published_files_follow_the_umask(tmp_path, tiny_bert, sentiment_csv):
    old = os.umask(0o022)
    try:
        run = sentitune.train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0),
                              tmp_path / "run", progress=False).run_dir
        sentitune.evaluate(run, behavioral=False)
    finally:
        os.umask(old)
    published = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in published)
    modes = {p.relative_to(run): stat.S_IMODE(p.stat().st_mode) for p in published}
    unreadable = {path: oct(mode) for path, mode in modes.items() if mode & 0o044 != 0o044}
    assert not unreadable


def test_damaged_config_is_one_line(capsys, tmp_path, tiny_run_dir):
    import shutil

    for content, expected in ((b"\xff\xfe not utf-8", "not UTF-8"), (b"data: [", "not valid YAML"),
                              (b"- a\n- b\n", "must hold a mapping")):
        run = tmp_path / f"run{len(content)}"
        shutil.copytree(tiny_run_dir, run)
        (run / "config.yaml").write_bytes(content)
        for verb in ("predict", "evaluate", "export"):
            args = [verb, str(run)] + (["hello"] if verb == "predict" else [])
            code, _, err = run_cli(capsys, *args)
            assert_one_line_error(code, err, "config.yaml", expected)
    with pytest.raises(SentituneError, match="config.yaml"):
        Run.open(run)


def test_presets_ship_inside_the_package():
    from sentitune.config import PRESETS_DIR

    assert PRESETS_DIR.is_relative_to(REPO / "src" / "sentitune")
    assert json.dumps(sentitune.presets()) and "sst2-minilm" in sentitune.presets()
