"""What a user reads on the console (issue 27): one-line errors with a "did you mean", no
abbreviated flags, presets with their purpose, data problems and epochs in one line each."""

from __future__ import annotations

import json
import re

import pytest
from conftest import assert_one_line_error, run_cli


@pytest.mark.parametrize("verb", ["train", "tune", "distill", "compare"])
def test_an_abbreviated_flag_is_no_flag(capsys, verb):
    code, out, err = run_cli(capsys, verb, "--epoch", "1")
    assert_one_line_error(code, err, "unrecognized arguments: --epoch", "did you mean --epochs?")
    assert out == "" and "usage:" not in err


def test_a_mistyped_verb_gets_a_suggestion(capsys):
    code, _, err = run_cli(capsys, "trian")
    assert_one_line_error(code, err, "invalid choice: 'trian'", "did you mean train?")


def test_presets_list_their_purpose(capsys):
    from sentitune.config import presets

    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == presets()
    for line in lines:  # name, then a sentence that says what it is for
        name, purpose = line.split(maxsplit=1)
        assert len(purpose) > 30 and purpose.endswith("."), line


def test_a_bad_threshold_in_decision_json_names_the_file(capsys, tmp_path, tiny_run_dir):
    """A NaN there was once reported as a bad --review-threshold the user never gave."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    decision = json.loads((run / "decision.json").read_text())
    (run / "decision.json").write_text(json.dumps(decision | {"review_threshold": float("nan")}))
    code, _, err = run_cli(capsys, "predict", str(run), "a fine film")
    assert_one_line_error(code, err, f"{run / 'decision.json'} is damaged (review_threshold "
                                    "must be a number from 0 to 1, not nan)")
    assert "--review-threshold" not in err


@pytest.fixture(scope="module")
def messy_csv(tmp_path_factory):
    """120 texts, 40 of them again (so the hold-out shares texts with training), 2 blank."""
    import pandas as pd
    from conftest import make_sentiment_frame

    frame = make_sentiment_frame(120)
    blank = pd.DataFrame({"text": [None, " "], "label": ["positive", "negative"]})
    path = tmp_path_factory.mktemp("messy") / "messy.csv"
    pd.concat([frame, frame.iloc[:40], blank]).to_csv(path, index=False)
    return path


def test_train_prints_data_problems_and_one_line_per_epoch(capsys, tmp_path, tiny_bert,
                                                           messy_csv):
    code, out, err = run_cli(capsys, "train", "--data", str(messy_csv), "--model",
                             str(tiny_bert), "--output", str(tmp_path / "run"), "--epochs",
                             "2", "--max-length", "16", "--learning-rate", "1e-2")
    assert code == 0
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert any("dropped: 2 from train" in line for line in warned), err
    assert any("training texts repeat an earlier one" in line for line in warned), err
    assert any("validation texts also appear in training" in line for line in warned), err
    assert "UserWarning" not in err and "warnings.warn" not in err
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("train loss" in line and "validation loss" in line for line in epochs)
    assert "{'" not in out and "\x1b" not in out + err and "\r" not in out + err


def test_data_prints_a_summary_with_its_problems(capsys, tmp_path, messy_csv):
    out_dir = tmp_path / "report"
    code, out, err = run_cli(capsys, "data", str(messy_csv), "--output", str(out_dir))
    assert code == 0
    report = json.loads((out_dir / "data_report.json").read_text())
    assert len(report["problems"]) == 3
    lines = out.splitlines()
    assert lines[0].startswith(f"{messy_csv}: binary, 2 labels")
    assert any(re.fullmatch(r"  duplicates: \d+ repeated texts in the source's training rows "
                            r"as read; within each split as used: train \d+, validation \d+",
                            line) for line in lines), out
    assert sum(line.startswith("  problem: ") for line in lines) == 3
    assert "measuring the token lengths of" in err  # progress, on stderr
    assert not out.lstrip().startswith("{")  # the JSON stays in its file


def test_lengths_plot_shows_each_split_as_shares(monkeypatch, tmp_path):
    """In counts a 10-row validation split vanished beside 1,000 training rows."""
    from sentitune import plots

    drawn = {}

    def keep(fig, path):
        drawn["heights"] = {}
        for container, label in zip(fig.axes[0].containers, ["train", "validation"],
                                    strict=True):
            drawn["heights"][label] = sum(bar.get_height() for bar in container)
        return plots.save_figure.__wrapped__(fig, path)

    original = plots.save_figure
    keep.__wrapped__ = original
    monkeypatch.setattr(plots, "save_figure", keep)
    plots.plot_lengths({"train": list(range(1000)), "validation": list(range(10))}, 64,
                       tmp_path / "lengths.png")
    assert drawn["heights"]["train"] == pytest.approx(1.0)
    assert drawn["heights"]["validation"] == pytest.approx(1.0)
    assert (tmp_path / "lengths.png").stat().st_size > 1000


def test_make_demo_installs_quietly():
    """`make demo` printed 250 lines: pip progress bars and notes, every recipe line echoed."""
    from conftest import REPO

    makefile = (REPO / "Makefile").read_text()
    pip = re.search(r"^PIP := (.*(?:\\\n.*)*)", makefile, re.M)[1]
    for quiet in ("-q", "--progress-bar off", "--disable-pip-version-check"):
        assert quiet in pip
    assert "pip install" not in makefile.replace(pip, "")  # every install goes through it
    demo = re.search(r"^demo: .*\n((?:\t.*\n)+)", makefile, re.M)[1]
    assert all(line.startswith("\t@") or line.startswith("\t  ") for line in demo.splitlines())
    assert "[tool.distutils" not in (REPO / "pyproject.toml").read_text()


def test_output_piped_into_head_ends_quietly():
    """`sentitune presets | head -1`: the reader closes the pipe early; the user sees the
    first line, no BrokenPipeError traceback, and exit status 0 as other Unix tools give."""
    import subprocess
    import sys

    shell = (f"{sys.executable} -c 'import sys; from sentitune.cli import main; "
             f"sys.exit(main())' presets | head -1")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.split()[0] == "emotion-minilm"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
