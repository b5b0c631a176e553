"""Inference backends: one small interface, chosen by name.

    torch       model/ with transformers (the adapter/ on its base for unmerged LoRA runs)
    torch-bf16  the same under bf16 autocast: fast on GPUs and CPUs with AMX or AVX512-BF16
    adapter     adapter/ on its base model with peft, even when model/ exists
    onnx        onnx/model.onnx with ONNX Runtime (after `sentitune export`); no torch
    onnx-int8   onnx/model.int8.onnx, the same way

A backend takes a padded batch of token ids (numpy) and returns float32 logits; it says
which inputs it takes and whether it runs on the CPU (where batches are bounded by
padding, see `length_batches`). Only safetensors weights are ever loaded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sentitune.config import BACKENDS
from sentitune.errors import SentituneError
from sentitune.run import Run


class Backend(Protocol):
    name: str
    input_names: tuple[str, ...]
    on_cpu: bool

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...


def load_backend(run: Run, name: str, device: str | None = None,
                 num_threads: int | None = None) -> Backend:
    """The named backend; `num_threads` caps an ONNX session's threads (torch's are
    process-wide: torch.set_num_threads)."""
    if name not in BACKENDS:
        raise SentituneError(f"--backend must be one of {', '.join(BACKENDS)}, not '{name}'")
    if name.startswith("onnx"):
        return OnnxBackend(run.onnx_path(int8=name == "onnx-int8"), name=name,
                           num_threads=num_threads)
    backend = TorchBackend.load(run, adapter=name == "adapter" or not run.model_dir.is_dir(),
                                device=device, bf16=name == "torch-bf16")
    if backend.bf16:
        _warn_about_bf16(run, backend.on_cpu)
    return backend


def _warn_about_bf16(run: Run, on_cpu: bool) -> None:
    """bf16 is a different numeric model: say when this run or machine does not suit it."""
    from sentitune.hardware import BF16_MIN_AGREEMENT, cpu_bf16_flags

    if on_cpu and not cpu_bf16_flags():
        warnings.warn("this CPU has no bf16 instructions (AMX or AVX512-BF16): --backend "
                      "torch-bf16 is emulated and slower than --backend torch", stacklevel=3)
    measured = run.metrics.get("bf16_agreement")
    if measured is None:
        warnings.warn(f"{run.path} has no bf16 agreement measurement (trained where bf16 was "
                      "not available); compare with --backend torch before relying on it",
                      stacklevel=3)
    elif measured["label_agreement"] < BF16_MIN_AGREEMENT:
        warnings.warn(f"bf16 gives the fp32 label on only {measured['label_agreement']:.1%} of "
                      f"{measured['n']} validation texts of this run; use --backend torch",
                      stacklevel=3)


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise SentituneError(
            f"ONNX support needs onnx and onnxruntime ({error.name} is missing): "
            "pip install 'sentitune[onnx]'") from None
    return onnxruntime


class OnnxBackend:
    """One ONNX Runtime session on CPU that maps a batch to float32 logits."""

    on_cpu = True

    def __init__(self, path: Path, *, name: str = "onnx", num_threads: int | None = None
                 ) -> None:
        ort = import_onnxruntime()
        if not Path(path).is_file():
            raise SentituneError(f"{path} does not exist; create it with `sentitune export`")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SentituneError(f"{path} cannot be loaded ({first}); re-run "
                                 "`sentitune export`") from None
        self.name = name
        self.input_names = tuple(node.name for node in self._session.get_inputs())

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        missing = [name for name in self.input_names if name not in batch]
        if missing:
            raise SentituneError(
                f"the ONNX model needs {', '.join(missing)} but the batch lacks it; "
                "re-export the model with the tokenizer it is used with")
        feed = {name: np.asarray(batch[name], dtype=np.int64) for name in self.input_names}
        (logits,) = self._session.run(["logits"], feed)
        return logits.astype(np.float32, copy=False)


class TorchBackend:
    """A transformers sequence classifier (or a peft adapter on its base) in eval mode."""

    def __init__(self, model, name: str, *, bf16: bool = False) -> None:
        import inspect

        self.model = model
        self.name = name
        self.bf16 = bf16  # autocast: weights stay fp32, matrix products run in bf16
        # peft's wrapper takes **kwargs and passes them on: ask the model underneath.
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        accepted = inspect.signature(base.forward).parameters
        self.input_names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids")
                                 if n in accepted)
        self.on_cpu = model.device.type == "cpu"

    @classmethod
    def load(cls, run: Run, *, adapter: bool, device: str | None = None,
             bf16: bool = False) -> TorchBackend:
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = _load_adapter(run) if adapter else load_safetensors_model(run.model_dir)
        name = "torch-bf16" if bf16 else "adapter" if adapter else "torch"
        return cls(model.eval().to(device), name, bf16=bf16)

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.forward(batch).logits.float().cpu().numpy()

    def forward(self, batch: dict[str, np.ndarray], **options):
        """The model's outputs for a padded batch (`options`: output_hidden_states, ...)."""
        import torch

        with torch.inference_mode(), torch.autocast(self.model.device.type, torch.bfloat16,
                                                    enabled=self.bf16):
            inputs = {name: torch.from_numpy(batch[name]).to(self.model.device)
                      for name in self.input_names}
            return self.model(**inputs, **options)


def load_safetensors_model(folder: Path, **options):
    """A saved sequence classifier, from safetensors only: a run never unpickles code.
    `options` go to from_pretrained (a dtype, say)."""
    from transformers import AutoModelForSequenceClassification

    folder = Path(folder)
    weights = sorted(p.name for p in folder.glob("*.safetensors"))
    if not weights:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        what = f"only pickle weights ({', '.join(pickled)})" if pickled else "no weights"
        raise SentituneError(
            f"{folder} has {what}; sentitune loads safetensors only (pickle files can run "
            "code): convert them with save_pretrained(safe_serialization=True) or retrain")
    try:
        return AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True,
                                                                  **options)
    except Exception as exc:  # safetensors and transformers raise many types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SentituneError(f"the model in {folder} ({', '.join(weights)}) cannot be loaded "
                             f"({first[:200]}); it is damaged or incomplete: retrain or restore "
                             "the run") from None


def _load_adapter(run: Run):
    from peft import PeftConfig, PeftModel

    from sentitune.model import load_model

    if not run.adapter_dir.is_dir():
        raise SentituneError(f"{run.path} has no adapter/; --backend adapter is for LoRA runs")
    # Rebuild the base with this run's labels (and head size) before attaching the adapter;
    # peft's auto class would rebuild a default two-label head.
    base = load_model(PeftConfig.from_pretrained(run.adapter_dir).base_model_name_or_path,
                      run.labels, run.task)
    try:
        return PeftModel.from_pretrained(base, run.adapter_dir)
    except Exception as exc:
        raise SentituneError(f"the adapter in {run.adapter_dir} cannot be loaded "
                             f"({type(exc).__name__}); retrain or restore the run") from None
