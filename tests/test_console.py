"""What a user reads on the console (issue 27): one-line errors with a "did you mean", no
abbreviated flags, presets with their purpose, data problems and epochs in one line each."""

from __future__ import annotations

import json

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
    assert_one_line_error(code, err, f"{run / 'decision.json'} holds a threshold outside 0..1")
    assert "--review-threshold" not in err
