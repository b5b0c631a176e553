"""Export a trained classifier to ONNX and run it with ONNX Runtime.

The graph takes the tokenizer's own input names (`input_ids`, `attention_mask` and, for
BERT-like models, `token_type_ids`) with dynamic batch and sequence axes, and returns raw
`logits`: softmax/sigmoid stay in Python so the torch and ONNX paths share one
post-processing. `onnx` and `onnxruntime` are optional (`sentitune[onnx]`) and are only
imported when an export or a session is asked for.
"""

from __future__ import annotations

import copy
import inspect
import logging
import random
import shutil
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sentitune.errors import SentituneError
from sentitune.metrics import probabilities

ONNX_DIR = "onnx"  # inside a run directory, beside model/
ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
QUANTIZE_CHOICES = ("int8",)
# fp32 ONNX Runtime and torch differ only by kernel summation order (~1e-6 on MiniLM-L6); a
# wrongly traced branch (a frozen mask, dropout left on) is off by 0.1 or more. A thousandth
# separates the two with room for deeper models.
FP32_ATOL = 1e-3
# Dynamic int8 of the weight MatMuls, with per-channel weight scales. Activation x activation
# MatMuls (attention), softmax, the pooler and the classifier stay fp32, and so do the embeddings:
# int8 embeddings would shrink the file by 60%, but on MiniLM they raised the mean probability
# error of the int8 model by 40% (0.0039 -> 0.0055) for no speed.
INT8_OP_TYPES = ("MatMul",)
INT8_PER_CHANNEL = True
# ONNX Runtime quantizes a MatMul's input with one range per tensor, so a few outlier channels
# and tokens set the step for everything else; see _Int8ReadyLinear. 0.5 is SmoothQuant's
# default and measured best of 0.3-0.6 on MiniLM (benchmarks/results/int8_variants-*.json).
SMOOTHING_ALPHA = 0.5
CALIBRATION_TEXTS = 256  # texts whose activation maxima set the smoothing scales

# Sentences of varied length: verification must cover padding and several sequence lengths.
_SAMPLE_TEXTS = (
    "great",
    "not good at all",
    "the plot was thin but the acting carried the whole film to the end",
    "i would not watch it again , although my friends seemed to enjoy every minute of it , "
    "which i still do not understand after thinking about it for a week",
)


def _import_onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it, fail early with our message)
        import onnxruntime
    except ImportError as error:
        raise SentituneError(
            f"ONNX support needs onnx and onnxruntime ({error.name} is missing): "
            "pip install 'sentitune[onnx]'"
        ) from error
    return onnxruntime


def onnx_path(run_dir: Path, *, int8: bool = False) -> Path:
    """The exported graph of a run directory; raises if `sentitune export` has not made it."""
    path = Path(run_dir) / ONNX_DIR / (INT8_NAME if int8 else ONNX_NAME)
    if not path.is_file():
        flag = " --quantize int8" if int8 else ""
        raise SentituneError(f"{path} does not exist; run `sentitune export {run_dir}{flag}` first")
    return path


def _load(model_dir: Path) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise SentituneError(
            f"{model_dir} is not a saved model (no config.json); pass the model/ folder of a run"
        )
    try:
        # float32 whatever the saved dtype: the fp32 graph is the reference that int8 starts from.
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise SentituneError(
            f"cannot load a classifier and tokenizer from {model_dir} ({first_line}); "
            "pass the model/ folder of a finished run"
        ) from error
    return model.eval(), tokenizer


def _input_names(model: torch.nn.Module, tokenizer: Any) -> list[str]:
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


def _encode(tokenizer: Any, texts: Sequence[str], input_names: Sequence[str]) -> dict[str, Any]:
    encoded = tokenizer(list(texts), padding=True, truncation=True, return_tensors="np")
    return {name: encoded[name].astype(np.int64) for name in input_names}


def _verification_batches(tokenizer: Any, input_names: Sequence[str]) -> list[dict[str, Any]]:
    # Shapes differ from the export example (2 x short), so dynamic axes are exercised too.
    return [
        _encode(tokenizer, _SAMPLE_TEXTS, input_names),
        _encode(tokenizer, _SAMPLE_TEXTS[-1:], input_names),
        _encode(tokenizer, _SAMPLE_TEXTS[:1] * 3, input_names),
    ]


def _torch_logits(model: torch.nn.Module, encoded: Mapping[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        inputs = {name: torch.from_numpy(array) for name, array in encoded.items()}
        return model(**inputs).logits.numpy()


def agreement(
    reference_probs: np.ndarray, candidate_probs: np.ndarray, *, multi_label: bool = False
) -> dict[str, Any]:
    """How closely `candidate_probs` (e.g. int8 ONNX) follows `reference_probs` (torch).

    `label_agreement` is the share of rows whose predicted label is the same: the argmax for
    single-label tasks; for multi-label ones the whole set of labels at probability >= 0.5
    must match, since a row with one label more or less is a different prediction.
    """
    reference = np.asarray(reference_probs, dtype=np.float64)
    candidate = np.asarray(candidate_probs, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(
            f"need two (n, num_labels) arrays, got {reference.shape} and {candidate.shape}"
        )
    if multi_label:
        same = ((reference >= 0.5) == (candidate >= 0.5)).all(axis=1)
    else:
        same = reference.argmax(axis=1) == candidate.argmax(axis=1)
    n = len(reference)
    return {
        "label_agreement": float(same.mean()) if n else 1.0,
        "max_prob_diff": float(np.abs(reference - candidate).max()) if n else 0.0,
        "n": n,
    }


class OnnxBackend:
    """One ONNX Runtime session on CPU that maps tokenizer output to float32 logits."""

    def __init__(self, onnx_path: Path, *, num_threads: int | None = None) -> None:
        ort = _import_onnxruntime()
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise SentituneError(f"{onnx_path} does not exist; create it with `sentitune export`")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            options.intra_op_num_threads = num_threads
        self._session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = tuple(node.name for node in self._session.get_inputs())

    def logits(self, encoded: Mapping[str, Any]) -> np.ndarray:
        """Float32 logits (n, num_labels); tokenizer keys the graph does not take are dropped."""
        missing = [name for name in self.input_names if name not in encoded]
        if missing:
            raise SentituneError(
                f"the ONNX model needs {', '.join(missing)} but the tokenizer did not produce it; "
                "re-export the model with the tokenizer it is used with"
            )
        feed = {name: np.asarray(encoded[name], dtype=np.int64) for name in self.input_names}
        (logits,) = self._session.run(["logits"], feed)
        return logits.astype(np.float32, copy=False)


def _export_fp32(
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


class _Int8ReadyLinear(torch.nn.Module):
    """A token-wise Linear rewritten so that dynamic int8 quantization of its input loses less.

    y = W x + b is computed as ((x / s) / r) @ (W * s).T * r + b, which is exact in fp32:
    - s, per input channel, is SmoothQuant's (Xiao et al., 2023) scale: it moves part of the
      range of the few outlier channels into the weights, which are quantized per channel;
    - r, per token, is the token's own max |x|: without it one token with large activations
      sets the int8 step of every token in the batch.
    On MiniLM (SST-2 dev + IMDb, benchmarks/int8_variants.py) it raised label agreement with
    torch from 97.3% to 99.4% and cut the mean probability error from 0.018 to 0.004, at 82%
    of plain int8's throughput. Only the graph that gets quantized is rewritten.
    """

    def __init__(self, linear: torch.nn.Linear, input_max: torch.Tensor, alpha: float) -> None:
        super().__init__()
        weight = linear.weight.detach()
        smooth = (input_max.clamp(min=1e-5) ** alpha
                  / weight.abs().amax(dim=0).clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)
        self.register_buffer("weight", weight * smooth)
        self.register_buffer("inverse_smooth", 1 / smooth)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.inverse_smooth
        token_max = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-6)
        out = torch.nn.functional.linear(x / token_max, self.weight) * token_max
        return out if self.bias is None else out + self.bias


def _token_wise_input_max(
    model: torch.nn.Module, batches: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, torch.Tensor]:
    """Per-channel max |input| of every Linear applied to each token, over `batches`.

    Token-wise Linears (attention projections, feed-forward) see (batch, sequence, features)
    inputs; the pooler and the head see one vector per text, export as Gemm and stay fp32.
    """
    maxima: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_module: torch.nn.Module, args: tuple) -> None:
            if args[0].dim() == 3:
                seen = args[0].detach().abs().amax(dim=(0, 1))
                maxima[name] = torch.maximum(maxima[name], seen) if name in maxima else seen
        return hook

    handles = [module.register_forward_pre_hook(record(name))
               for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    try:
        for batch in batches:
            _torch_logits(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def _int8_ready(model: torch.nn.Module, batches: Sequence[Mapping[str, np.ndarray]]
                ) -> torch.nn.Module:
    """A copy of `model` with every token-wise Linear replaced by an _Int8ReadyLinear."""
    ready = copy.deepcopy(model)
    for name, input_max in _token_wise_input_max(model, batches).items():
        parent, _, child = name.rpartition(".")
        owner = ready.get_submodule(parent)
        setattr(owner, child, _Int8ReadyLinear(getattr(owner, child), input_max, SMOOTHING_ALPHA))
    return ready.eval()


def _quantize_int8(
    model: torch.nn.Module,
    calibration: Sequence[Mapping[str, np.ndarray]],
    example: Mapping[str, np.ndarray],
    int8_path: Path,
    opset: int,
) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = int8_path.with_name("int8-source.onnx")
    _export_fp32(_int8_ready(model, calibration), example, source, opset)
    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}
    # Named explicitly: left to itself, quantize_dynamic also turns the pooler's and the
    # classifier's Gemm into int8 MatMuls, and the logits then carry their rounding directly.
    token_wise = [node.name for node in graph.node
                  if node.op_type in INT8_OP_TYPES and node.input[1] in weights]
    with _quiet_root_logger():
        quantize_dynamic(
            source,
            int8_path,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(INT8_OP_TYPES),
            nodes_to_quantize=token_wise,
            per_channel=INT8_PER_CHANNEL,
        )
    source.unlink()


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence quantize_dynamic's advice, which is for static quantization.

    It logs through `logging.warning`, which would also give the root logger a stderr
    handler for good; the NullHandler keeps the root logger as the user configured it.
    """
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.WARNING))
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeHandler(guard)


def _check_out_dir(out_dir: Path) -> None:
    # An earlier export is replaced; anything else in the way is the user's and stays.
    if out_dir.exists() and not (
        out_dir.is_dir() and ((out_dir / ONNX_NAME).is_file() or not any(out_dir.iterdir()))
    ):
        raise SentituneError(
            f"{out_dir} exists and does not hold an earlier export; choose an empty or new folder"
        )


def _sibling(out_dir: Path, kind: str) -> Path:
    # Hidden and unique beside out_dir: same filesystem, so renames are atomic.
    return out_dir.parent / f".{out_dir.name}.{kind}-{uuid.uuid4().hex[:8]}"


def _replace_dir(new: Path, out_dir: Path) -> None:
    """Move the finished `new` to `out_dir`, swapping out an earlier export if there is one."""
    if not out_dir.exists():
        new.rename(out_dir)
        return
    old = _sibling(out_dir, "old")
    out_dir.rename(old)
    new.rename(out_dir)
    shutil.rmtree(old)


def export_onnx(
    model_dir: Path,
    out_dir: Path,
    *,
    quantize: str | None = None,
    opset: int = 17,
    calibration_texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Export `model_dir` to `out_dir/model.onnx` (and `model.int8.onnx`), verified against torch.

    `calibration_texts` (int8 only) are the texts whose activation ranges set the int8
    smoothing scales: a sample of the data the model will see; built-in sentences without.

    Everything is written to a hidden folder beside `out_dir` and renamed into place at the
    end, so an interrupted or failed export never leaves an `out_dir` that looks complete.
    """
    _import_onnxruntime()
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise SentituneError(f"unknown quantization {quantize!r}; use one of {QUANTIZE_CHOICES}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    _check_out_dir(out_dir)
    model, tokenizer = _load(model_dir)
    input_names = _input_names(model, tokenizer)
    multi_label = model.config.problem_type == "multi_label_classification"

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out_dir, "tmp")
    tmp.mkdir()  # not mkdtemp: its 0700 mode would outlive the rename
    try:
        example = _encode(tokenizer, _SAMPLE_TEXTS[1:3], input_names)
        _export_fp32(model, example, tmp / ONNX_NAME, opset)
        batches = _verification_batches(tokenizer, input_names)
        reference = [_torch_logits(model, batch) for batch in batches]
        fp32 = OnnxBackend(tmp / ONNX_NAME)
        max_abs_diff = max(
            float(np.abs(fp32.logits(batch) - ref).max())
            for batch, ref in zip(batches, reference, strict=True)
        )
        if not max_abs_diff <= FP32_ATOL:  # also catches NaN
            raise SentituneError(
                f"the ONNX export of {model_dir} disagrees with torch (max logit difference "
                f"{max_abs_diff:.2g} > {FP32_ATOL}); try another opset or report the model type"
            )
        result: dict[str, Any] = {
            "onnx_path": str(out_dir / ONNX_NAME),
            "input_names": input_names,
            "num_labels": model.config.num_labels,
            "multi_label": multi_label,
            "opset": opset,
            "max_abs_diff": max_abs_diff,
        }
        if quantize == "int8":
            texts = list(calibration_texts or _SAMPLE_TEXTS)[:CALIBRATION_TEXTS]
            calibration = [_encode(tokenizer, texts[start:start + 32], input_names)
                           for start in range(0, len(texts), 32)]
            _quantize_int8(model, calibration, example, tmp / INT8_NAME, opset)
            result["int8_calibration_texts"] = len(texts)
            int8 = OnnxBackend(tmp / INT8_NAME)
            # Informative only: a handful of sentences cannot judge int8 accuracy, an eval can.
            result["int8_path"] = str(out_dir / INT8_NAME)
            task = "multilabel" if multi_label else "multiclass"
            result["int8_agreement"] = agreement(
                probabilities(np.concatenate(reference), task),
                probabilities(np.concatenate([int8.logits(batch) for batch in batches]), task),
                multi_label=multi_label,
            )
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _run_texts(data: dict, split: str, labels: list[str], task: str) -> list[str] | None:
    """The texts of one split of a run's data source (its saved `data` settings), or None
    when that source is no longer readable."""
    from sentitune.data import load_eval_split

    try:
        frame, _ = load_eval_split(data["dataset"], split, labels, task,
                                   data["text_column"], data["label_column"])
    except SentituneError:
        return None
    return list(frame["text"])


def export_run(run_dir: Path, *, quantize: str | None = None, max_texts: int = 1000) -> dict:
    """Export a run's model/ to RUN_DIR/onnx and measure agreement with the torch model.

    Agreement is measured on the run's own validation texts (its training data source),
    or on built-in sample sentences when that source is no longer readable. The int8
    calibration texts are sampled from the training split, apart from those.
    """
    from sentitune import rundir
    from sentitune.predict import Classifier

    run_dir = rundir.check_run_dir(Path(run_dir))
    if not (run_dir / "model").is_dir():
        raise SentituneError(f"{run_dir} has no merged model/; retrain with --merge-lora true")
    torch_clf = Classifier.from_pretrained(run_dir, device="cpu")
    data = rundir.read_yaml(run_dir / "config.yaml")["data"]
    texts = _run_texts(data, "validation", torch_clf.labels, torch_clf.task)
    if texts:
        texts, source = texts[:max_texts], f"{data['dataset']} (validation)"
    else:
        texts, source = list(_SAMPLE_TEXTS), "built-in sample sentences"
    calibration = None
    if quantize:
        held_out = set(texts)
        pool = [text for text in _run_texts(data, "train", torch_clf.labels, torch_clf.task)
                or [] if text not in held_out]
        calibration = random.Random(0).sample(pool, min(CALIBRATION_TEXTS, len(pool))) or None
    result = export_onnx(run_dir / "model", run_dir / ONNX_DIR, quantize=quantize,
                         calibration_texts=calibration)
    reference = torch_clf.predict_proba(texts)
    backends = ["onnx"] + (["onnx-int8"] if quantize else [])
    multi_label = torch_clf.task == "multilabel"
    result["agreement"] = {
        backend: agreement(reference, Classifier.from_pretrained(
            run_dir, backend=backend).predict_proba(texts), multi_label=multi_label)
        for backend in backends
    }
    result["agreement_texts"] = source
    return result
