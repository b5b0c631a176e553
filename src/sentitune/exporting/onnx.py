"""Export a trained classifier to ONNX and run it with ONNX Runtime.

The graph takes the tokenizer's own input names (`input_ids`, `attention_mask` and, for
BERT-like models, `token_type_ids`) with dynamic batch and sequence axes, and returns raw
`logits`: softmax/sigmoid stay in Python so the torch and ONNX paths share one
post-processing. `onnx` and `onnxruntime` are optional (`sentitune[onnx]`) and are only
imported when an export or a session is asked for.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sentitune.errors import SentituneError
from sentitune.truncation import transformers_encoding

# fp32 ONNX Runtime and torch differ only by kernel summation order (~1e-6 on MiniLM-L6); a
# wrongly traced branch (a frozen mask, dropout left on) is off by 0.1 or more. A thousandth
# separates the two with room for deeper models.
FP32_ATOL = 1e-3

# Sentences of varied length: verification must cover padding and several sequence lengths.
SAMPLE_TEXTS = (
    "great",
    "not good at all",
    "the plot was thin but the acting carried the whole film to the end",
    "i would not watch it again , although my friends seemed to enjoy every minute of it , "
    "which i still do not understand after thinking about it for a week",
)


def load_for_export(model_dir: Path) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoTokenizer

    from sentitune.inference.backends import load_safetensors_model

    if not (model_dir / "config.json").is_file():
        raise SentituneError(
            f"{model_dir} is not a saved model (no config.json); pass the model/ folder of a run"
        )
    # float32 whatever the saved dtype: the fp32 graph is the reference that int8 starts from;
    # safetensors only, like every other loader (a pickle file can run code).
    model = load_safetensors_model(model_dir, dtype=torch.float32)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise SentituneError(
            f"cannot load the tokenizer from {model_dir} ({first_line}); "
            "pass the model/ folder of a finished run"
        ) from error
    return model.eval(), tokenizer


def input_names_of(model: torch.nn.Module, tokenizer: Any) -> list[str]:
    # A tokenizer can emit inputs the architecture does not take (a BERT tokenizer saved with a
    # DistilBERT gives token_type_ids); the graph takes only what forward() accepts.
    accepted = inspect.signature(model.forward).parameters
    names = [name for name in tokenizer.model_input_names if name in accepted]
    if "input_ids" not in names:
        raise SentituneError(
            f"the tokenizer's inputs {tokenizer.model_input_names} do not fit "
            f"{type(model).__name__}; save the model with the tokenizer it was trained with"
        )
    return names


class _LogitsOnly(torch.nn.Module):
    """Positional inputs in a fixed order and one tensor out, so ONNX names map one to one."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs, strict=True))).logits


def encode(tokenizer: Any, texts: Sequence[str], input_names: Sequence[str],
           max_length: int | None = None, truncation: str = "head") -> dict[str, Any]:
    """A padded numpy batch; with `max_length`, cut as a run with `truncation` cuts."""
    if max_length is None:
        encoded = tokenizer(list(texts), padding=True, truncation=True, return_tensors="np")
    else:
        encoded = tokenizer.pad(transformers_encoding(tokenizer, texts, max_length, truncation),
                                return_tensors="np")
    return {name: encoded[name].astype(np.int64) for name in input_names}


def verification_batches(tokenizer: Any, input_names: Sequence[str]) -> list[dict[str, Any]]:
    # Shapes differ from the export example (2 x short), so dynamic axes are exercised too.
    return [
        encode(tokenizer, SAMPLE_TEXTS, input_names),
        encode(tokenizer, SAMPLE_TEXTS[-1:], input_names),
        encode(tokenizer, SAMPLE_TEXTS[:1] * 3, input_names),
    ]


def torch_logits(model: torch.nn.Module, encoded: Mapping[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        inputs = {name: torch.from_numpy(array) for name, array in encoded.items()}
        return model(**inputs).logits.numpy()


def export_fp32(
    model: torch.nn.Module, example: Mapping[str, np.ndarray], path: Path, opset: int
) -> None:
    input_names = list(example)
    # A new Module starts in training mode, and the exporter restores the wrapper's mode
    # afterwards, which would switch dropout on in `model` for the torch side of verification.
    wrapper = _LogitsOnly(model, input_names).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python-level shape check in transformers; the numeric
        # verification after export is what tells whether a traced branch was wrong.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(torch.from_numpy(array) for array in example.values()),
            str(path),
            input_names=input_names,
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and traces HF models fine
        )
