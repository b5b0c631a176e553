"""The architectures side by side: parameters, size, training and inference speed.

distilbert-base, bert-base, roberta-base and albert-base-v2 (and the bundled MiniLM-L6) at
their published sizes, with random weights: speed and size do not depend on the weights, and
pretrained ones cannot be had offline here. Accuracy does need them, so the only accuracy
given is MiniLM's, read from benchmarks/results/compare-minilm-sst2-cpu/compare.json.

Inputs have SST-2 lengths: the dev sentences tokenized with the bert-base-uncased WordPiece
tokenizer (the only base tokenizer available offline; RoBERTa's BPE and ALBERT's
sentencepiece give lengths within about 10% of it on English), filled with random token ids
of each model's vocabulary. Training is a plain AdamW loop (forward, backward, step) over
dynamically padded batches; inference sorts the texts by length and pads each batch to its
own longest, as sentitune does. Each round measures every model in turn and each keeps its
best round: other work on a shared machine only ever adds time.

    python benchmarks/architectures.py [--device auto|cpu|cuda] [--quick] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import emit, machine

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SENTITUNE_SHARED", REPO.parent / "shared"))
MINILM_ACCURACY = REPO / "benchmarks" / "results" / "compare-minilm-sst2-cpu" / "compare.json"


def configs(tiny: bool = False) -> dict:
    """The published base sizes (AlbertConfig() alone is albert-xxlarge); with `tiny`, the same
    architectures at hidden size 32 and 2 layers, so a test can run the script in seconds."""
    found = _base_configs()
    if tiny:
        for config in found.values():
            distil = config.model_type == "distilbert"
            intermediate = "hidden_dim" if distil else "intermediate_size"
            config.update({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           intermediate: 64})
            if config.model_type == "albert":
                config.embedding_size = 16
    return found


def _base_configs() -> dict:
    from transformers import AlbertConfig, AutoConfig, RobertaConfig

    from sentitune.model import bundled_minilm

    shared = SHARED / "models"
    return {
        "distilbert-base": AutoConfig.from_pretrained(shared / "distilbert-base-uncased"),
        "bert-base": AutoConfig.from_pretrained(shared / "bert-base-uncased"),
        "roberta-base": RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                                      num_attention_heads=12, intermediate_size=3072,
                                      max_position_embeddings=514, type_vocab_size=1,
                                      pad_token_id=1, bos_token_id=0, eos_token_id=2),
        "albert-base-v2": AlbertConfig(vocab_size=30000, embedding_size=128, hidden_size=768,
                                       num_hidden_layers=12, num_attention_heads=12,
                                       intermediate_size=3072, hidden_act="gelu_new",
                                       max_position_embeddings=512, pad_token_id=0),
        "minilm-l6 (bundled)": AutoConfig.from_pretrained(bundled_minilm()),
    }


def sst2_lengths(max_length: int) -> np.ndarray:
    import pandas as pd
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SHARED / "models" / "bert-base-uncased")
    texts = list(pd.read_csv(SHARED / "data" / "sst2" / "dev.tsv", sep="\t", quoting=3)["sentence"])
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return np.array([len(ids) for ids in encoded])


def batch(lengths: np.ndarray, vocab_size: int, rng: np.random.Generator, device):
    import torch

    width = int(lengths.max())
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(5, vocab_size, size=(len(lengths), width)) * mask
    return {"input_ids": torch.from_numpy(ids).to(device),
            "attention_mask": torch.from_numpy(mask).to(device)}


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def train_samples_per_s(model, lengths, batch_size: int, steps: int, device) -> tuple[float, float]:
    """(samples/s over `steps` steps after two warm-up steps, peak CUDA memory in MB or NaN)."""
    import torch

    rng = np.random.default_rng(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    model.train()
    order = np.resize(rng.permutation(len(lengths)), (steps + 2) * batch_size)  # wraps around
    batches = [order[i * batch_size:(i + 1) * batch_size] for i in range(steps + 2)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i, rows in enumerate(batches):
        if i == 2:
            synchronize(device)
            started = time.perf_counter()
        inputs = batch(lengths[rows], model.config.vocab_size, rng, device)
        labels = torch.from_numpy(rng.integers(0, 2, size=len(rows))).to(device)
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else math.nan
    return steps * batch_size / seconds, peak


def inference_texts_per_s(model, lengths, batch_size: int, device) -> float:
    import torch

    rng = np.random.default_rng(1)
    order = np.argsort(lengths, kind="stable")
    batches = [batch(lengths[order[i:i + batch_size]], model.config.vocab_size, rng, device)
               for i in range(0, len(order), batch_size)]
    model.eval()
    with torch.inference_mode():
        model(**batches[-1])  # warm-up on the longest batch
        synchronize(device)
        started = time.perf_counter()
        for inputs in batches:
            model(**inputs)
        synchronize(device)
    return len(lengths) / (time.perf_counter() - started)


def size_mb(model) -> float:
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")) / 2**20


def minilm_accuracy() -> dict | None:
    if not MINILM_ACCURACY.exists():
        return None
    report = json.loads(MINILM_ACCURACY.read_text())
    # Saved before compare compared models too, when its variants were only methods.
    full = (report.get("variants") or report["methods"])["full"]["val_accuracy"]
    return {"sst2_dev_accuracy_mean": full["mean"], "std": full["std"], "seeds": full["n"],
            "source": str(MINILM_ACCURACY.relative_to(REPO)) + " (full fine-tuning, 1,000 "
                      "SST-2 train sentences, 400 validation)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true",
                        help="defaults of 5 training steps, 256 texts, 2 rounds (a smoke run)")
    parser.add_argument("--train-steps", type=int, help="timed steps per round (default: 20)")
    parser.add_argument("--texts", type=int, help="SST-2 dev sentences to infer (default: 872)")
    parser.add_argument("--rounds", type=int, help="rounds (default: 3)")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch")
    parser.add_argument("--inference-batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--tiny", action="store_true",
                        help="hidden size 32, 2 layers: checks the script, measures nothing")
    parser.add_argument("--output")
    args = parser.parse_args()
    defaults = {"train_steps": 5, "texts": 256, "rounds": 2} if args.quick else {
        "train_steps": 20, "texts": 872, "rounds": 3}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    load_start = os.getloadavg()
    device = torch.device("cuda" if args.device == "cuda" or (
        args.device == "auto" and torch.cuda.is_available()) else "cpu")
    lengths = sst2_lengths(args.max_length)[:args.texts]
    models = {}
    results: dict[str, dict] = {}
    for name, config in configs(args.tiny).items():
        config.num_labels = 2
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config)
        results[name] = {
            "model_type": config.model_type,
            "total_params": sum(p.numel() for p in model.parameters()),
            "size_mb": round(size_mb(model), 1),
            "hidden_size": config.hidden_size, "layers": config.num_hidden_layers,
            "train_samples_per_s": [], "inference_texts_per_s": [], "peak_train_memory_mb": [],
        }
        models[name] = model.to(device)
    for _ in range(args.rounds):
        for name, model in models.items():
            speed, peak = train_samples_per_s(model, lengths, args.batch_size, args.train_steps,
                                              device)
            results[name]["train_samples_per_s"].append(round(speed, 2))
            results[name]["peak_train_memory_mb"].append(round(peak, 1))
            results[name]["inference_texts_per_s"].append(
                round(inference_texts_per_s(model, lengths, args.inference_batch_size, device), 2))
    for row in results.values():
        row["best_train_samples_per_s"] = max(row["train_samples_per_s"])
        row["best_inference_texts_per_s"] = max(row["inference_texts_per_s"])
        if device.type == "cuda":
            row["peak_train_memory_mb"] = max(row["peak_train_memory_mb"])
        else:
            del row["peak_train_memory_mb"]  # CPU RSS cannot be told apart per model in one process
    reference = results["bert-base"]
    for row in results.values():
        row["vs_bert_base"] = {
            "params": round(row["total_params"] / reference["total_params"], 3),
            "train_speed": round(row["best_train_samples_per_s"]
                                 / reference["best_train_samples_per_s"], 3),
            "inference_speed": round(row["best_inference_texts_per_s"]
                                     / reference["best_inference_texts_per_s"], 3),
        }
    emit({
        "benchmark": "architectures",
        "weights": "random (speed and size only; accuracy needs pretrained weights)",
        "sizes": "tiny (hidden 32, 2 layers): a check of the script" if args.tiny else "published",
        "accuracy": {"minilm-l6 (bundled)": minilm_accuracy()},
        "inputs": {"lengths": f"SST-2 dev, first {len(lengths)} sentences, bert-base-uncased "
                              f"WordPiece tokens, max {args.max_length}",
                   "mean_tokens": round(float(lengths.mean()), 1),
                   "train_batch_size": args.batch_size, "train_steps": args.train_steps,
                   "inference_batch_size": args.inference_batch_size,
                   "rounds": args.rounds, "statistic": "best round"},
        "device": str(device),
        "models": results,
        "machine": machine(load_start) | {"note": "ratios between models are measured in turns"},
    }, args.output)


if __name__ == "__main__":
    main()
