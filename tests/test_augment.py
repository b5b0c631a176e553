"""Text augmentation (`--augment N --augment-methods ...`) on train and distill."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import assert_one_line_error, make_sentiment_frame, run_cli, tiny_config

import sentitune.evaluation
from sentitune.dataset.augment import (
    FILLERS,
    FRAMES,
    Copies,
    augment_text,
    augment_texts,
    embedding_neighbours,
    negate,
    swap_identity,
)
from sentitune.run import Run

TEXTS = ["the film was great and she loved it", "a dull , boring movie",
         "it is not a good story", "he was a christian man", "what a charming film"]


def test_same_seed_same_copies_other_seed_other_copies():
    methods = ("mask", "ngram", "identity", "negation")
    first = augment_texts(TEXTS, 3, methods, seed=1, mask_token="[MASK]")
    assert first == augment_texts(TEXTS, 3, methods, seed=1, mask_token="[MASK]")
    assert first != augment_texts(TEXTS, 3, methods, seed=2, mask_token="[MASK]")
    copies, sources = first.texts, first.sources
    assert len(copies) == len(sources) and 0 < len(copies) <= 15
    assert not set(copies) & set(TEXTS) and len(set(copies)) == len(copies)
    assert not any(first.flipped)  # only frames flip a label
    assert augment_texts(TEXTS, 0, methods, seed=1, mask_token="[MASK]") == Copies([], [], [])


def test_identity_terms_swap_within_their_group():
    rng = np.random.default_rng(0)
    swapped = swap_identity(["He", "was", "a", "Christian", "man", "."], rng)
    assert swapped[0] == "She" and swapped[4] == "woman"
    assert swapped[3] in ("Muslim", "Jewish", "Hindu", "Buddhist", "Atheist")
    assert swap_identity(["a", "film"], rng) == ["a", "film"]


def test_negation_is_removed_or_added():
    def negated(text: str) -> str:
        return " ".join(negate(text.split(" ")))

    assert negated("it is not a good story") == "it is a good story"
    assert negated("it does n't work") == "it does work"
    assert negated("it isn't fun") == "it is fun"
    assert negated("the plot was thin") == "the plot was not thin"
    assert negated("charming and funny") == "charming and funny"
    assert negated("the film 's score") == "the film 's score"  # a possessive


def test_frames_keep_or_flip_by_their_rule():
    texts = ["a charming film .", "dull and slow"]
    copies = augment_texts(texts, 60, ("frames",), seed=0, mask_token="[MASK]")
    rule = dict(FRAMES)
    assert len(copies.texts) > 60 and {True, False} == set(copies.flipped)
    for text, source, flipped in zip(copies.texts, copies.sources, copies.flipped,
                                     strict=True):
        inside = texts[source].rstrip(" .")  # a full stop would end the frame early
        assert inside in text and " ., " not in text
        templates = [t for t in rule if _fits(t, text, inside)]
        assert templates and all(rule[t] == flipped for t in templates), text
    assert any("muslim" in t or "american" in t or "black" in t for t in copies.texts)
    # Mask and frames together: the masked words sit inside the frame.
    both = augment_texts(["w " * 50], 1, ("mask", "frames"), seed=0, mask_token="[MASK]")
    assert "[MASK]" in both.texts[0] and not both.texts[0].startswith("w w")


def _fits(template: str, text: str, source: str) -> bool:
    """Whether `text` is `template` filled with `source`, any filler and identity term."""
    pattern = re.escape(template).replace(re.escape("{}"), re.escape(source))
    for slot in ("{filler}", "{identity}"):
        pattern = pattern.replace(re.escape(slot), "[^,:]+")
    return re.fullmatch(pattern, text) is not None


def test_frame_labels_flip_the_binary_label():
    copies = Copies(["x", "y", "z"], [0, 1, 1], [True, False, True])
    assert copies.labels([1, 0]) == [0, 0, 1]
    # Unflipped copies keep any label as it is: a multi-label row's list of labels too.
    kept = Copies(["x", "y"], [1, 0], [False, False])
    assert kept.labels([[0, 2], [1]]) == [[1], [0, 2]]


def test_frames_share_nothing_with_the_behavioural_suite():
    from sentitune.evaluation.suite import generate_suite, lexicon

    assert not set(FILLERS) & set(lexicon()["neutral_filler"])
    suite_texts = {case["text"] for test in generate_suite() for case in test["cases"]}
    copies = augment_texts(["the film was good", "This movie is great."], 200, ("frames",),
                           seed=0, mask_token="[MASK]")
    assert not set(copies.texts) & suite_texts
    suite = json.loads((Path(sentitune.evaluation.__file__).parent / "checks" /
                        "suite.json").read_text())
    templates = [case.get("template", case.get("base", "")) for test in suite["tests"]
                 for case in test.get("cases", test.get("pairs"))]
    pieces = [piece.strip(" ,:?.") for template, _ in FRAMES
              for piece in re.split(r"\{\w*\}", template)]
    for piece in (p for p in pieces if len(p.split()) >= 3):  # "It is true that"
        assert not any(piece.lower() in t.lower() for t in templates), piece


def test_masking_rate_and_ngram_length():
    rng = np.random.default_rng(0)
    long = " ".join(f"w{i}" for i in range(2000))
    masked = augment_text(long, ("mask",), rng, "[MASK]").split()
    assert len(masked) == 2000 and 0.07 < masked.count("[MASK]") / 2000 < 0.13
    grams = [augment_text(long, ("ngram",), rng, "[MASK]").split() for _ in range(400)]
    cut = [g for g in grams if len(g) < 2000]
    assert 0.15 < len(cut) / 400 < 0.35 and all(1 <= len(g) <= 5 for g in cut)
    assert all(" ".join(g) in long for g in cut)


def test_embedding_neighbours_are_nearest_whole_words():
    vocabulary = {"[PAD]": 0, "good": 1, "great": 2, "bad": 3, "##ly": 4, "film": 5, "x": 6,
                  "the": 7}
    matrix = np.array([[0, 0], [1, 0.1], [1, 0.2], [-1, 0], [1, 0.15], [0, 1], [1, 0.1],
                       [1, 0.1]], dtype=np.float32)
    found = embedding_neighbours(["good", "film", "unknown", "ly", "the"], vocabulary, matrix,
                                 k=2)
    # Not itself, not '##ly', not one-letter 'x', not the stop word 'the' (nor is it swapped).
    assert found["good"] == ["great", "film"]
    assert set(found) == {"good", "film"}
    rng = np.random.default_rng(0)
    swapped = augment_text("good " * 300, ("neighbours",), rng, "[MASK]", found).split()
    assert 0.05 < sum(w != "good" for w in swapped) / 300 < 0.15
    assert set(swapped) <= {"good", "great", "film"}


def test_train_adds_labelled_copies_and_records_them(tiny_bert, sentiment_csv, tmp_path):
    from sentitune.training import train

    result = train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0, augment=2,
                               augment_methods=("mask", "identity")), tmp_path / "run",
                   progress=False)
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["training"]["augment"] == 2
    assert saved["training"]["augment_methods"] == ["mask", "identity"]
    facts = saved["augmentation"]
    assert facts["methods"] == ["mask", "identity"] and facts["labels"] == "source text's"
    rows = Run.open(result.run_dir).facts["rows"]["train"]
    assert 0 < facts["copies_added"] <= 2 * rows  # copies equal to their source are dropped
    assert "Augmented: 2 copies per training text" in (result.run_dir / "README.md").read_text()


def test_train_labels_framed_copies_by_the_rule(tiny_bert, sentiment_csv, tmp_path):
    from sentitune.training import train

    result = train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0, augment=1,
                               augment_methods=("frames",)), tmp_path / "run", progress=False)
    facts = Run.open(result.run_dir).facts
    assert facts["augmentation"]["labels"] == "source text's, flipped by negating frames"
    # Each text is framed; a repeated text may draw a frame it already has (dropped).
    rows = facts["rows"]["train"]
    assert 0.9 * rows <= facts["augmentation"]["copies_added"] <= rows


def three_class_csv(folder: Path) -> Path:
    """The sentiment texts relabelled into three classes: a task that is not binary."""
    data = make_sentiment_frame(60)
    data["label"] = [("sad", "happy", "angry")[i % 3] for i in range(len(data))]
    data.to_csv(folder / "three.csv", index=False)
    return folder / "three.csv"


def test_frames_need_a_binary_task(capsys, tiny_bert, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", str(three_class_csv(tmp_path)), "--model",
                           str(tiny_bert), "--output", str(out), "--epochs", "1", "--augment",
                           "1", "--augment-methods", "frames,identity")
    assert_one_line_error(code, err, "frames", "binary", "multiclass")
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_distill_teachers_label_the_copies(tiny_run_dir, tmp_path):
    from sentitune.distillation import distill

    result = distill(tiny_run_dir, tmp_path / "s", student="teacher:1", epochs=1.0,
                     augment=1, seed=3, progress=False)
    facts = Run.open(result.run_dir).facts
    assert facts["augmentation"]["labels"] == "teachers"
    assert facts["augmentation"]["methods"] == ["neighbours", "mask", "ngram", "identity",
                                                "negation"]
    taught = facts["distillation"]
    assert 0 < taught["augmented_rows"] <= facts["augmentation"]["copies_added"]
    assert taught["unlabeled_rows"] == 0


@pytest.mark.parametrize("flags, words", [
    (["--augment", "-1"], ("--augment", ">= 0")),
    (["--augment", "1", "--augment-methods", "ngram"], ("ngram", "distill")),
    (["--augment", "1", "--augment-methods", "typos"], ("--augment-methods", "identity")),
    (["--augment", "1", "--augment-methods", "negation"], ("negation", "frames", "distill")),
])
def test_bad_input_is_one_line(capsys, tiny_bert, sentiment_csv, tmp_path, flags, words):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", str(sentiment_csv), "--model",
                           str(tiny_bert), "--output", str(out), "--epochs", "1", *flags)
    assert_one_line_error(code, err, *words)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_sentiment_frame_is_untouched_by_augmentation():
    frame = make_sentiment_frame(10)
    texts = list(frame["text"])
    augment_texts(texts, 2, ("mask",), seed=0, mask_token="[MASK]")
    assert texts == list(frame["text"])


def test_a_distill_preset_with_augmentation(capsys, tiny_run_dir, tmp_path):
    preset = tmp_path / "student.yaml"
    preset.write_text("# a student\ndistill: {student: 'teacher:1', alpha: 0.7}\n"
                      "training: {epochs: 1, augment: 1, augment_methods: [negation, identity],"
                      " learning_rate: 0.001}\n")
    out = tmp_path / "s"
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--config", str(preset),
                           "--seed", "5", "--output", str(out), "--quiet")
    assert code == 0, err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["distillation"]["alpha"] == 0.7 and saved["distillation"]["kept_layers"] == [1]
    assert saved["training"]["augment_methods"] == ["negation", "identity"]
    assert saved["training"]["seed"] == 5 and saved["training"]["learning_rate"] == 0.001
    # A distill preset is not a recipe for train, and a train preset is not one for distill.
    code, _, err = run_cli(capsys, "train", "--config", str(preset), "--output",
                           str(tmp_path / "t"))
    assert_one_line_error(code, err, "distill preset", "sentitune distill")
    code, _, err = run_cli(capsys, "distill", str(tiny_run_dir), "--config", "sst2-minilm",
                           "--output", str(tmp_path / "t"))
    assert_one_line_error(code, err, "not a distill preset")
    assert not (tmp_path / "t").exists()


def test_shipped_student_presets_are_distill_presets():
    from sentitune.config import distill_preset

    for layers in (3, 2):
        for suffix, copies, matching in (("", 0, 0), ("-aug", 1, 0), ("-pkd", 0, 100)):
            found = distill_preset(f"sst2-minilm-student{layers}{suffix}")
            assert found["student"] == f"teacher:{layers}"
            assert found.get("augment", 0) == copies
            assert found.get("hidden_weight", 0) == matching
    grown = distill_preset("sst2-minilm-student3-imdb")
    assert grown["student"] == "teacher:3" and grown["unlabeled"] == "imdb"
    assert grown["unlabeled_unit"] == "sentence" and grown["unlabeled_samples"] == 67349


def test_the_robust_preset_is_the_full_recipe_plus_frames():
    from sentitune.config import load_preset

    robust, full = load_preset("sst2-minilm-robust"), load_preset("sst2-minilm-full")
    assert robust.training.augment == 1
    assert robust.training.augment_methods == ("identity", "frames")
    assert robust.replace(augment=0, augment_methods=None) == full


def test_distill_teachers_label_frames_on_any_task(tiny_bert, tmp_path):
    from sentitune.distillation import distill
    from sentitune.training import train

    teacher = train(tiny_config(tiny_bert, three_class_csv(tmp_path), epochs=1.0),
                    tmp_path / "teacher", progress=False).run_dir
    # frames must be asked for: distill's default leaves them out.
    result = distill(teacher, tmp_path / "s", student="teacher:1", epochs=1.0,
                     augment=1, augment_methods=("frames",), seed=3, progress=False)
    facts = Run.open(result.run_dir).facts
    assert facts["augmentation"] == {"methods": ["frames"], "labels": "teachers",
                                     "copies_added": facts["augmentation"]["copies_added"]}
    assert facts["distillation"]["augmented_rows"] > 0
