"""The source documents' GPU recipes, measured: full vs LoRA, fp32 vs bf16, padding.

DistilBERT (SST-2, batch 256 in its recipe) and BERT-base (full vs LoRA r=8 alpha=16 on
query,value: "compare VRAM, speed, parameters") are built from their real configs and
tokenizers in ../shared/models with RANDOM weights: speed and memory do not depend on the
weight values, accuracy does (so none is reported here).

Every arm trains on the same SST-2 training sentences (seeded sample, max length 128):
- padding "tutorial": random batches, every text padded to 128 tokens;
- padding "sentitune": batches of similar length (transformers' LengthGroupedSampler),
  each padded to its own longest text.
Training steps are a plain AdamW loop (lr 2e-5) with the autocast the Trainer uses for
`bf16=True`, so the numbers are the model's, not the Trainer's bookkeeping. Peak memory is
`torch.cuda.max_memory_allocated` per arm (null on CPU). Inference: texts/s of the SST-2
dev sentences at batch 1 and 64 (length-sorted, dynamic padding), fp32 and bf16.

    python benchmarks/gpu_recipes.py --output benchmarks/results/gpu_recipes-h100.json
    python benchmarks/gpu_recipes.py --tiny   # 2-layer, 32-wide versions: a CPU smoke run
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np
from common import emit, machine

SHARED = Path(os.environ.get("SENTITUNE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MODELS = {"distilbert": "distilbert-base-uncased", "bert": "bert-base-uncased"}
MAX_LENGTH = 128
# The tiny models keep each architecture but not its size: a CPU check that every arm runs.
TINY = {"distilbert": {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
        "bert": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "intermediate_size": 64}}


def sst2_sentences(split: str, n: int | None, seed: int = 0) -> list[str]:
    import pandas as pd

    data = Path(os.environ.get("SENTITUNE_DATA_DIR", SHARED / "data"))
    texts = pd.read_csv(data / "sst2" / f"{split}.tsv", sep="\t", quoting=3)["sentence"]
    texts = [str(t) for t in texts]
    if n is not None and n < len(texts):
        texts = random.Random(seed).sample(texts, n)
    return texts


def build(name: str, tiny: bool, method: str, device):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from sentitune.config import TrainingConfig
    from sentitune.model import apply_lora, parameter_counts

    config = AutoConfig.from_pretrained(SHARED / "models" / MODELS[name], num_labels=2)
    if tiny:
        config.update(TINY[name])
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    if method == "lora":  # sentitune's own LoRA: r=8, alpha=16 on query,value per architecture
        model = apply_lora(model, TrainingConfig(method="lora", lora_r=8, lora_alpha=16))
    trainable, total = parameter_counts(model)
    return model.to(device), trainable, total


def batches(lengths: np.ndarray, batch_size: int, padding: str, seed: int) -> list[np.ndarray]:
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    if padding == "tutorial":
        order = np.random.default_rng(seed).permutation(len(lengths))
    else:
        generator = torch.Generator().manual_seed(seed)
        order = np.array(list(LengthGroupedSampler(batch_size, lengths=lengths.tolist(),
                                                   generator=generator)))
    return [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]


def padded(ids: list[list[int]], picked: np.ndarray, padding: str, device):
    import torch

    width = MAX_LENGTH if padding == "tutorial" else max(len(ids[i]) for i in picked)
    input_ids = torch.zeros((len(picked), width), dtype=torch.long)
    mask = torch.zeros((len(picked), width), dtype=torch.long)
    for row, i in enumerate(picked):
        input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
        mask[row, :len(ids[i])] = 1
    return input_ids.to(device), mask.to(device)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def train_arm(model, ids, lengths, batch_size, padding, bf16, steps, warmup, device) -> dict:
    import torch

    plan = batches(lengths, batch_size, padding, seed=42)
    plan = (plan * (1 + (steps + warmup) // max(len(plan), 1)))[:steps + warmup]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tokens = real = 0
    for step, picked in enumerate(plan):
        if step == warmup:
            sync(device)
            started = time.perf_counter()
            tokens = real = 0
        input_ids, mask = padded(ids, picked, padding, device)
        labels = torch.as_tensor(np.asarray(picked) % 2, device=device)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += input_ids.numel()
        real += int(mask.sum())
    sync(device)
    seconds = time.perf_counter() - started
    return {
        "samples_per_s": round(steps * batch_size / seconds, 1),
        "padding_share": round(1 - real / tokens, 3),
        "peak_memory_mb": (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                           if device.type == "cuda" else None),
    }


def infer_arm(model, ids, batch_size, bf16, device, repeats: int) -> dict:
    import torch

    model.eval()
    order = np.argsort([len(row) for row in ids], kind="stable")
    plan = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for picked in plan[:3]:  # warm-up: kernels, allocator
            model(*padded(ids, picked, "sentitune", device))
        sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            for picked in plan:
                model(*padded(ids, picked, "sentitune", device))
        sync(device)
    return {"texts_per_s": round(repeats * len(ids) / (time.perf_counter() - started), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 32])
    parser.add_argument("--steps", type=int, default=60, help="timed training steps per arm")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them")
    parser.add_argument("--train-texts", type=int, default=8192)
    parser.add_argument("--infer-texts", type=int, default=None, help="SST-2 dev; all: 872")
    parser.add_argument("--infer-repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="2-layer 32-wide models (CPU check)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer

    from sentitune.model import quiet_transformers

    quiet_transformers()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported() or device.type == "cpu"
    train_texts = sst2_sentences("train", args.train_texts)
    infer_texts = sst2_sentences("dev", args.infer_texts)
    started = time.perf_counter()
    result: dict = {"benchmark": "gpu_recipes", "weights": "random (speed and memory only)",
                    "tiny": args.tiny, "max_length": MAX_LENGTH, "models": {}}
    for name in args.models:
        tokenizer = AutoTokenizer.from_pretrained(SHARED / "models" / MODELS[name])
        ids = tokenizer(train_texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        lengths = np.array([len(row) for row in ids])
        dev_ids = tokenizer(infer_texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        entry: dict = {"config": MODELS[name], "mean_tokens": round(float(lengths.mean()), 1),
                       "train": [], "inference": []}
        for method in ("full", "lora"):
            model, trainable, total = build(name, args.tiny, method, device)
            entry.setdefault("parameters", {})[method] = {"trainable": trainable,
                                                          "total": total}
            for batch_size in args.batch_sizes:
                for precision in ("fp32", "bf16"):
                    if precision == "bf16" and not bf16_ok:
                        continue
                    for padding in ("tutorial", "sentitune"):
                        arm = train_arm(model, ids, lengths, batch_size, padding,
                                        precision == "bf16", args.steps, args.warmup, device)
                        entry["train"].append({"method": method, "batch_size": batch_size,
                                               "precision": precision, "padding": padding}
                                              | arm)
                        print(name, entry["train"][-1], flush=True)
            del model
        model, _, _ = build(name, args.tiny, "full", device)
        for batch_size in (1, 64):
            for precision in ("fp32", "bf16"):
                if precision == "bf16" and not bf16_ok:
                    continue
                repeats = 1 if batch_size == 1 else args.infer_repeats
                entry["inference"].append({"batch_size": batch_size, "precision": precision}
                                          | infer_arm(model, dev_ids, batch_size,
                                                      precision == "bf16", device, repeats))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result["models"][name] = entry
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = machine(load_start)
    emit(result, args.output)


if __name__ == "__main__":
    main()
