"""Distillation: teacher runs teach a smaller student, which is an ordinary run."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml
from conftest import (
    assert_one_line_error,
    make_sentiment_frame,
    run_cli,
    tiny_config,
)

from sentitune.distillation import distillation_loss
from sentitune.model import keep_layers, kept_layers
from sentitune.run import Run


@pytest.fixture(scope="module")
def unlabeled_txt(tmp_path_factory):
    """Unlabeled texts: new ones, plus two that duplicate a training text."""
    path = tmp_path_factory.mktemp("unlabeled") / "texts.txt"
    texts = list(make_sentiment_frame(60, seed=11)["text"])
    path.write_text("\n".join(texts + [texts[0], ""]) + "\n")
    return path


@pytest.fixture(scope="module")
def second_teacher(tmp_path_factory, tiny_bert, sentiment_csv):
    from sentitune.training import train

    out = tmp_path_factory.mktemp("teachers") / "tiny-seed9"
    train(tiny_config(tiny_bert, sentiment_csv, epochs=2.0, seed=9), out, progress=False)
    return out


def test_kept_layers_are_spread_and_end_with_the_last():
    assert kept_layers(6, 3) == [1, 3, 5]
    assert kept_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert kept_layers(6, 6) == list(range(6))
    assert kept_layers(2, 1) == [1]
    with pytest.raises(Exception, match="between 1 and 6"):
        kept_layers(6, 7)


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_keep_layers_copies_the_chosen_layers(kind, tiny_bert, tiny_distilbert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    source = tiny_bert if kind == "bert" else tiny_distilbert
    teacher = AutoModelForSequenceClassification.from_pretrained(source)
    student = AutoModelForSequenceClassification.from_pretrained(source)
    assert keep_layers(student, 1) == [1]
    student.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    stack = "bert.encoder.layer" if kind == "bert" else "distilbert.transformer.layer"
    assert len(reloaded.get_submodule(stack)) == 1
    for (name, kept), (_, original) in zip(
            reloaded.get_submodule(stack)[0].state_dict().items(),
            teacher.get_submodule(stack)[1].state_dict().items(), strict=True):
        assert torch.equal(kept, original), name


def test_distillation_loss_single_label():
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    t = 2.0
    soft = torch.softmax(logits / t, dim=-1)
    hard = torch.tensor([[0.0], [2.0], [-1.0], [-1.0]])  # the last two rows are unlabeled
    labels = torch.cat([hard, soft], dim=1)
    # Soft targets equal to the student's own: the KL term vanishes.
    only_kd = distillation_loss("binary", t, 1.0)({"logits": logits}, labels)
    assert abs(float(only_kd)) < 1e-6
    # alpha 0: cross-entropy on the labelled rows alone.
    only_ce = distillation_loss("binary", t, 0.0)({"logits": logits}, labels)
    expected = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([0, 2]))
    assert torch.allclose(only_ce, expected)
    # Other soft targets: T^2 * KL, averaged over every row.
    other = torch.full((4, 3), 1 / 3)
    kd = distillation_loss("binary", t, 1.0)({"logits": logits},
                                             torch.cat([hard, other], dim=1))
    by_hand = (other * (other.log() - torch.log_softmax(logits / t, -1))).sum(1).mean() * t * t
    assert torch.allclose(kd, by_hand)
    # Validation rows carry plain labels and get the plain loss.
    plain = distillation_loss("binary", t, 0.5)({"logits": logits}, torch.tensor([0, 1, 2, 0]))
    assert torch.allclose(plain, torch.nn.functional.cross_entropy(
        logits, torch.tensor([0, 1, 2, 0])))


def test_distillation_loss_multi_label():
    torch.manual_seed(1)
    logits = torch.randn(3, 2)
    t = 3.0
    has = torch.tensor([[1.0], [0.0], [1.0]])
    hard = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    soft = torch.sigmoid(logits / t)
    loss = distillation_loss("multilabel", t, 0.0)({"logits": logits},
                                                  torch.cat([has, hard, soft], dim=1))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 2]], hard[[0, 2]])
    assert torch.allclose(loss, expected)


def test_distill_makes_an_ordinary_smaller_run(capsys, tiny_run_dir, second_teacher,
                                               unlabeled_txt, tmp_path):
    out = tmp_path / "student"
    code, stdout, err = run_cli(capsys, "distill", str(tiny_run_dir), str(second_teacher),
                                "--student", "teacher:1", "--unlabeled", str(unlabeled_txt),
                                "--epochs", "2", "--output", str(out), "--quiet")
    assert code == 0, err
    assert "student saved to" in stdout
    run = Run.open(out)
    facts = yaml.safe_load((out / "config.yaml").read_text())["distillation"]
    assert facts["teachers"] == [str(tiny_run_dir), str(second_teacher)]
    assert facts["kept_layers"] == [1] and facts["same_tokenizer"] is True
    train_rows = run.facts["rows"]["train"]
    assert facts["labelled_rows"] == train_rows
    # Blank lines and texts already in the training or validation rows are not added again.
    assert 0 < facts["unlabeled_rows"] <= 60 and facts["unlabeled_dropped"] >= 2
    assert json.loads((out / "model" / "config.json").read_text())["num_hidden_layers"] == 1
    assert tiny_run_dir.name in (out / "README.md").read_text()
    assert run.metrics["distilled_from"] == facts["teachers"]
    # The student serves every verb a run does.
    code, stdout, _ = run_cli(capsys, "predict", str(out), "a wonderful film")
    assert code == 0 and json.loads(stdout)["label"] in ("negative", "positive")
    code, _, _ = run_cli(capsys, "evaluate", str(out), "--split", "validation")
    assert code == 0


def test_student_learns_the_teachers_answers(tiny_run_dir, tmp_path):
    """alpha 1 and no hard labels: the student's answers move to the teacher's."""
    from sentitune.distillation import distill
    from sentitune.inference.classifier import Classifier

    texts = list(make_sentiment_frame(40, seed=5)["text"])
    result = distill(tiny_run_dir, tmp_path / "s", student="teacher:1", alpha=1.0, epochs=4.0,
                     learning_rate=1e-2, progress=False)
    teacher = Classifier.from_pretrained(tiny_run_dir).predict_proba(texts).argmax(1)
    student = Classifier.from_pretrained(result.run_dir).predict_proba(texts).argmax(1)
    assert (teacher == student).mean() >= 0.9


def test_a_student_with_another_tokenizer_is_warned_about(capsys, tiny_run_dir, family_models,
                                                         tmp_path):
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--student",
                           str(family_models["roberta"]), "--epochs", "1", "--output",
                           str(tmp_path / "s"), "--quiet")
    assert code == 0, err
    assert "tokenizer differs" in err and "own tokenization" in err


def test_a_student_holding_out_other_rows_than_its_teacher_is_warned_about(capsys, tiny_run_dir,
                                                                            tmp_path):
    """The tiny teacher's data has no validation split: its hold-out is drawn with its seed."""
    taught = Run.open(tiny_run_dir).config.training.seed
    for seed, warned in ((taught + 1, True), (taught, False)):
        code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--student", "teacher:1",
                               "--epochs", "1", "--seed", str(seed), "--output",
                               str(tmp_path / f"s{seed}"), "--quiet")
        assert code == 0, err
        said = (f"the student holds out other validation rows than its teacher (seed {seed}, "
                f"the teacher's {taught}); the teacher trained on some of them, so the student's "
                f"validation scores flatter it; give --seed {taught}, or compare both on the "
                "test split")
        assert (said in err) is warned, err


def test_bad_input_is_one_line(capsys, tiny_run_dir, tmp_path):
    no_text = tmp_path / "ids.csv"
    no_text.write_text("id,score\n1,2\n3,4\n")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--unlabeled", str(no_text),
                           "--output", str(tmp_path / "s"))
    assert_one_line_error(code, err, "no text column", "--unlabeled-column")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--unlabeled", "sst2",
                           "--output", str(tmp_path / "s"))
    assert_one_line_error(code, err, "no unlabeled texts")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--temperature", "0")
    assert_one_line_error(code, err, "--temperature")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--student", "teacher:9")
    assert_one_line_error(code, err, "between 1 and 2")
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob("*.partial"))


def test_teachers_with_other_labels_are_refused(capsys, tiny_run_dir, tmp_path, tiny_bert):
    from sentitune.training import train

    frame = make_sentiment_frame(60, seed=4)
    frame["label"] = frame["label"].map({"positive": "liked", "negative": "disliked"})
    frame.to_csv(tmp_path / "d.csv", index=False)
    train(tiny_config(tiny_bert, tmp_path / "d.csv", epochs=1.0), tmp_path / "other",
          progress=False)
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), str(tmp_path / "other"))
    assert_one_line_error(code, err, "share their labels")


def test_imdb_unlabeled_reviews(data_dir_env):
    from sentitune.distillation import read_unlabeled

    texts, column = read_unlabeled("imdb", None, 50, seed=1)
    assert column == "text" and len(texts) == 50
    assert texts == read_unlabeled("imdb", None, 50, seed=1)[0]  # seeded
    assert np.mean([len(t) for t in texts]) > 200  # reviews, not sentences
    pieces, _ = read_unlabeled("imdb", None, 500, seed=1, unit="sentence")
    assert len(pieces) == 500 and pieces == read_unlabeled("imdb", None, 500, 1, "sentence")[0]
    assert 40 < np.mean([len(p) for p in pieces]) < 200  # sentences of about SST-2's length
    assert not any("<br" in p for p in pieces)  # IMDb's paragraph breaks end sentences


def test_sentences_end_at_stops_and_line_breaks():
    from sentitune.dataset.splits import sentences

    assert sentences('Loved it. "Really!" Twice (no, thrice.) Slow...<br /><br />Why? 3.5 '
                     "stars.<BR>") == ["Loved it.", '"Really!"', "Twice (no, thrice.)",
                                      "Slow...", "Why?", "3.5 stars."]
    assert sentences("one sentence without a stop") == ["one sentence without a stop"]
    assert sentences("  <br />  ") == []


def test_unlabeled_sentences_are_the_rows(tiny_run_dir, tmp_path, capsys):
    """--unlabeled-unit sentence: each sentence of a review is a row the teacher labels;
    --unlabeled-samples counts sentences; the unit is saved and resumes as it began."""
    reviews = tmp_path / "reviews.csv"
    reviews.write_text('review\n"A fine cast. A dull plot! Would I go again? No."\n'
                       '"Great fun.<br /><br />Loved the score."\n')
    out = tmp_path / "student"
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--student", "teacher:1",
                           "--unlabeled", str(reviews), "--unlabeled-unit", "sentence",
                           "--unlabeled-samples", "5", "--epochs", "1", "--output", str(out),
                           "--quiet")
    assert code == 0, err
    facts = yaml.safe_load((out / "config.yaml").read_text())["distillation"]
    assert facts["unlabeled_unit"] == "sentence" and facts["unlabeled_column"] == "review"
    assert facts["unlabeled_rows"] == 5  # of the 6 sentences, not of the 2 reviews
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--unlabeled", str(reviews),
                           "--unlabeled-unit", "word", "--output", str(tmp_path / "s"))
    assert_one_line_error(code, err, "--unlabeled-unit", "sentence")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--unlabeled-unit",
                           "sentence", "--output", str(tmp_path / "s"))
    assert_one_line_error(code, err, "--unlabeled-unit sentence without --unlabeled")
    breaks = tmp_path / "breaks.csv"
    breaks.write_text('review\n"<br /><br />"\n')  # a text, but not one sentence
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--unlabeled", str(breaks),
                           "--unlabeled-unit", "sentence", "--output", str(tmp_path / "s"))
    assert_one_line_error(code, err, "holds no texts")
    assert not (tmp_path / "s").exists()


def test_an_unfinished_student_names_distill_to_resume(tiny_run_dir, tmp_path, monkeypatch):
    """It once said `sentitune train --resume`, which would train no student."""
    from sentitune.distillation import distill
    from sentitune.errors import SentituneError

    def interrupted(self):
        raise KeyboardInterrupt  # after the last checkpoint, before publishing

    monkeypatch.setattr(Run, "publish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distill(tiny_run_dir, tmp_path / "s", student="teacher:1", epochs=1.0, progress=False)
    monkeypatch.undo()
    with pytest.raises(SentituneError) as caught:
        Run.open(tmp_path / "s.partial")
    assert (f"`sentitune distill {tiny_run_dir} --student teacher:1 --resume --output "
            f"{tmp_path / 's'}`" in str(caught.value))
    resumed = distill(tiny_run_dir, tmp_path / "s", student="teacher:1", epochs=1.0,
                      resume=True, progress=False)
    assert not any(resumed.run_dir.rglob("resume-command.txt"))


def test_a_student_resumes_only_as_it_began(tiny_run_dir, tmp_path, monkeypatch):
    """The resume command once dropped every distill setting: a Patient KD student interrupted
    and resumed as told continued as plain KD, silently."""
    from sentitune.distillation import distill
    from sentitune.errors import SentituneError

    monkeypatch.setattr(Run, "publish", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        distill(tiny_run_dir, tmp_path / "s", student="teacher:2", hidden_weight=50.0,
                temperature=3.0, epochs=1.0, progress=False)
    monkeypatch.undo()
    with pytest.raises(SentituneError) as caught:
        Run.open(tmp_path / "s.partial")
    assert (f"`sentitune distill {tiny_run_dir} --student teacher:2 --temperature 3.0 "
            f"--hidden-weight 50.0 --resume --output {tmp_path / 's'}`" in str(caught.value))
    with pytest.raises(SentituneError, match=re.escape(
            "--temperature 2.0 (was 3.0), --hidden-weight 0.0 (was 50.0)")):
        distill(tiny_run_dir, tmp_path / "s", student="teacher:2", epochs=1.0, resume=True,
                progress=False)
    resumed = distill(tiny_run_dir, tmp_path / "s", student="teacher:2", hidden_weight=50.0,
                      temperature=3.0, epochs=1.0, resume=True, progress=False)
    facts = Run.open(resumed.run_dir).facts["distillation"]
    assert facts["hidden_weight"] == 50.0 and facts["matched_layers"] == [[0, 0]]


def test_distill_says_what_it_does_before_training(capsys, tiny_run_dir, tmp_path):
    """The teachers' labelling once ran 47-60 s with nothing on screen."""
    code, out, err = run_cli(capsys, "distill", str(tiny_run_dir), "--student", "teacher:1",
                             "--epochs", "1", "--output", str(tmp_path / "s"))
    assert code == 0
    assert re.search(r"the teachers label [\d,]+ texts for the student", err), err
    assert "epoch 1/1: train loss" in out


def test_matched_layers_leave_out_the_students_last():
    from sentitune.layer_matching import matched_layers

    assert matched_layers(6, 3) == [(0, 1), (1, 3)]  # student 0, 1 were teacher 1, 3
    assert matched_layers(6, 2) == [(0, 2)]
    assert matched_layers(2, 2) == [(0, 0)]
    with pytest.raises(Exception, match="keep at least 2"):
        matched_layers(6, 1)


def _cls_agreement(student_dir, teacher_dir, texts) -> float:
    """Mean cosine between the student's and the teacher's first-layer [CLS] states."""
    from sentitune.inference.classifier import Classifier

    states = []
    for run_dir in (student_dir, teacher_dir):
        member = Classifier.from_pretrained(run_dir).members[0]
        batch = member.encoder.pad(*member.encoder.encode(texts)[:2])
        with torch.inference_mode():
            hidden = member.backend.model(**{k: torch.from_numpy(batch[k])
                                             for k in member.backend.input_names},
                                          output_hidden_states=True).hidden_states
        states.append(hidden[1][:, 0])
    return torch.nn.functional.cosine_similarity(*states, dim=-1).mean().item()


def test_hidden_weight_pulls_the_students_layers_to_the_teachers(tiny_run_dir, tiny_bert,
                                                                  tmp_path):
    """The same student from the same random start, with and without layer matching: only
    the matched one's first-layer [CLS] state turns towards the teacher's."""
    from sentitune.distillation import distill

    texts = list(make_sentiment_frame(30, seed=7)["text"])
    agreement = {}
    for weight in (0.0, 1000.0):
        result = distill(tiny_run_dir, tmp_path / f"s{weight:g}", student=str(tiny_bert),
                         hidden_weight=weight, epochs=6.0, learning_rate=3e-3, progress=False)
        agreement[weight] = _cls_agreement(result.run_dir, tiny_run_dir, texts)
        facts = yaml.safe_load((result.run_dir / "config.yaml").read_text())["distillation"]
        assert facts["hidden_weight"] == weight
        assert facts.get("matched_layers") == ([[0, 0]] if weight else None)
    # Measured: 0.72 without matching, 0.99 with it.
    assert agreement[1000.0] > 0.95 and agreement[1000.0] > agreement[0.0] + 0.15, agreement


def test_hidden_weight_bad_input_is_one_line(capsys, tiny_run_dir, second_teacher,
                                             family_models, tmp_path):
    out = str(tmp_path / "s")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--hidden-weight", "-1",
                           "--output", out)
    assert_one_line_error(code, err, "--hidden-weight must be >= 0")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), str(second_teacher),
                           "--hidden-weight", "100", "--output", out)
    assert_one_line_error(code, err, "one teacher")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--hidden-weight", "100",
                           "--student", "teacher:1", "--output", out)
    assert_one_line_error(code, err, "keep at least 2")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--hidden-weight", "100",
                           "--student", "minilm", "--output", out)
    assert_one_line_error(code, err, "384 wide", "teacher's 32")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--hidden-weight", "100",
                           "--student", str(family_models["albert"]), "--output", out)
    assert_one_line_error(code, err, "albert student shares one layer")
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob("*.partial"))
