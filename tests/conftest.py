"""Shared fixtures: tiny random-weight models and tiny datasets, built in seconds.

The tiny models have the real BERT / DistilBERT architectures and the real uncased
tokenizer (shipped with the bundled MiniLM package), only with 2 small layers, so
every code path runs exactly as it does for the full-size models.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SENTITUNE_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"

# Tests never touch the network: the hub is unreachable here and must stay unused.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "2")

POSITIVE_WORDS = ["great", "wonderful", "excellent", "superb", "lovely", "brilliant", "moving",
                  "delightful", "fantastic", "charming"]
NEGATIVE_WORDS = ["awful", "terrible", "boring", "dreadful", "dull", "horrible", "bad",
                  "tedious", "clumsy", "painful"]
TEMPLATES = ["the film was {}", "a {} movie", "what a {} story", "the acting is {} and {}",
             "{} , simply {}", "i found it {}"]


def make_sentiment_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """A learnable toy sentiment set: templates filled with clearly polar words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = POSITIVE_WORDS if label else NEGATIVE_WORDS
        template = rng.choice(TEMPLATES)
        text = template.format(*(rng.choice(words) for _ in range(template.count("{}"))))
        rows.append((text, "positive" if label else "negative"))
    return pd.DataFrame(rows, columns=["text", "label"])


def require_shared_data() -> Path:
    """The shared data folder, or skip the test when this checkout has none beside it."""
    if not (SHARED_DATA / "sst2" / "dev.tsv").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def build_tiny_model(kind: str, out: Path, num_labels: int = 2) -> Path:
    """Save a 2-layer random model of architecture `kind` with the uncased tokenizer."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    from sentitune.model import bundled_minilm

    torch.manual_seed(0)
    if kind == "bert":
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=512, num_labels=num_labels)
        model = BertForSequenceClassification(config)
    elif kind == "distilbert":
        config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=2,
                                  hidden_dim=64, max_position_embeddings=512,
                                  num_labels=num_labels)
        model = DistilBertForSequenceClassification(config)
    else:
        raise ValueError(kind)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(bundled_minilm()).save_pretrained(out)
    return out


# ----------------------------------------------------------------- every model family

# The families every stage is tested on end to end (tests/test_families.py).
FAMILIES = ("bert", "distilbert", "roberta", "albert", "deberta-v2")
# ALBERT and DeBERTa-v2 tokenizers are sentencepiece models; trained here as Unigram models.
_UNIGRAM_SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "[CLS]",
                     "sep_token": "[SEP]", "mask_token": "[MASK]"}
_BPE_SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>",
                 "unk_token": "<unk>", "mask_token": "<mask>", "cls_token": "<s>",
                 "sep_token": "</s>"}


def _tokenizer_corpus() -> list[str]:
    """What the small tokenizers learn from: the test sentences and, when present, SST-2 dev."""
    texts = list(make_sentiment_frame(400)["text"])
    sst2 = SHARED_DATA / "sst2" / "dev.tsv"
    if sst2.exists():
        texts += list(pd.read_csv(sst2, sep="\t", quoting=3)["sentence"])
    return texts


def build_byte_bpe_tokenizer(vocab_size: int = 600):
    """A RoBERTa-style byte-level BPE tokenizer (<s> A </s>), every byte in its alphabet."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = list(dict.fromkeys(_BPE_SPECIALS.values()))
    tokenizer.train_from_iterator(_tokenizer_corpus(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")),
        add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=512,
                                   model_input_names=["input_ids", "attention_mask"],
                                   **_BPE_SPECIALS)


def build_unigram_tokenizer(vocab_size: int = 600):
    """A sentencepiece-style Unigram tokenizer ([CLS] A [SEP], lower-cased, ▁ word marks)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(_tokenizer_corpus(), trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=list(_UNIGRAM_SPECIALS.values()),
        unk_token="<unk>", show_progress=False))
    cls, sep = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=512,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"], **_UNIGRAM_SPECIALS)


def build_family_model(family: str, out: Path, num_labels: int = 2) -> Path:
    """Save a 2-layer, hidden-32 random model of `family` with a tokenizer of its kind.

    BERT and DistilBERT use the real uncased WordPiece vocabulary; RoBERTa gets a byte-level
    BPE and ALBERT / DeBERTa-v2 a Unigram model, trained here on a few hundred sentences.
    """
    import torch
    from transformers import (
        AlbertConfig,
        AlbertForSequenceClassification,
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    if family in ("bert", "distilbert"):
        return build_tiny_model(family, out, num_labels)
    tokenizer = (build_byte_bpe_tokenizer() if family == "roberta"
                 else build_unigram_tokenizer())
    sizes = {"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "num_labels": num_labels,
             "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(0)
    if family == "roberta":
        model = RobertaForSequenceClassification(RobertaConfig(
            **sizes, max_position_embeddings=514, type_vocab_size=1,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    elif family == "albert":
        model = AlbertForSequenceClassification(AlbertConfig(
            **sizes, embedding_size=16, max_position_embeddings=512))
    elif family == "deberta-v2":
        model = DebertaV2ForSequenceClassification(DebertaV2Config(
            **sizes, max_position_embeddings=512, relative_attention=True, position_buckets=32,
            pos_att_type=["p2c", "c2p"], max_relative_positions=-1, pooler_hidden_size=32))
    else:
        raise ValueError(family)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def family_models(tmp_path_factory) -> dict[str, Path]:
    """Every family's tiny model, built once per session when first asked for."""
    root = tmp_path_factory.mktemp("families")

    class Models(dict):
        def __missing__(self, family: str) -> Path:
            self[family] = build_family_model(family, root / family)
            return self[family]

    return Models()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_model("bert", tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory) -> Path:
    return build_tiny_model("distilbert", tmp_path_factory.mktemp("tiny-distilbert"))


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    make_sentiment_frame(240).to_csv(path, index=False)
    return path


def tiny_config(model: Path, data: Path, **overrides):
    from sentitune.config import RunConfig

    base = {"dataset": str(data), "model": str(model), "max_length": 32, "epochs": 2.0,
            "batch_size": 16, "learning_rate": 1e-2, "warmup_ratio": 0.0, "seed": 7}
    return RunConfig().replace(**(base | overrides))


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_bert, sentiment_csv) -> Path:
    """A complete run directory from a tiny random BERT, trained in seconds."""
    from sentitune.training import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(tiny_bert, sentiment_csv, epochs=3.0), out, progress=False)
    return out


@pytest.fixture(scope="session")
def classifier(tiny_run_dir):
    """The tiny run, loaded once for every test that serves or scores it."""
    from sentitune.inference.classifier import Classifier

    return Classifier.from_pretrained(tiny_run_dir)


@pytest.fixture
def data_dir_env(monkeypatch):
    monkeypatch.setenv("SENTITUNE_DATA_DIR", str(require_shared_data()))
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_sst2_run(tmp_path_factory) -> Path:
    """The real bundled MiniLM fine-tuned on 1,000 SST-2 sentences (about a minute on CPU).

    Shared by every slow test so the suite trains the real model once.
    """
    os.environ["SENTITUNE_DATA_DIR"] = str(require_shared_data())
    from sentitune.config import RunConfig
    from sentitune.training import train

    config = RunConfig().replace(dataset="sst2", model="minilm", train_samples=1000,
                                 val_samples=400, max_length=64, epochs=2.0, batch_size=32,
                                 learning_rate=5e-5, seed=42)
    out = tmp_path_factory.mktemp("slow") / "minilm-sst2"
    train(config, out, progress=False)
    return out


# ----------------------------------------------------------------- shared helpers


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`sentitune ARGV...` in this process: (exit code, stdout, stderr)."""
    from sentitune.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *patterns: str) -> None:
    """Exit 2 and one `error:` line (warnings aside) holding every pattern."""
    assert code == 2
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for pattern in patterns:
        assert pattern in lines[0], lines[0]


def make_always_positive(run_dir: Path) -> None:
    """Turn a binary BERT run into a broken one: the head ignores the text, says positive."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model")
    positive = model.config.label2id["positive"]
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([4.0 if i == positive else -4.0
                                                  for i in range(model.config.num_labels)]))
    model.save_pretrained(run_dir / "model")


def validation_split(run_dir: Path) -> pd.DataFrame:
    """The run's own validation rows, rebuilt independently of sentitune.evaluate."""
    from sentitune.config import load_preset
    from sentitune.dataset import load_splits

    config = load_preset(str(run_dir / "config.yaml"))
    return load_splits(config.data, config.training.seed).validation


def read_trials_csv(tune_dir: Path) -> list[dict]:
    """The rows of a `sentitune tune` folder's trials.csv."""
    import csv

    with (tune_dir / "trials.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def figure_pngs(out: Path) -> list[Path]:
    return [out / link for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)",
                                              (out / "report.md").read_text())]
