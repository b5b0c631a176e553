"""Why the model answered: word-level attributions for the label it chose.

Three methods, each giving every word of a text a share of the chosen label's probability:

- ``integrated-gradients`` (Sundararajan et al. 2017, via captum): gradients of the label's
  probability along the straight path from a baseline (every text token replaced by the pad
  token, special tokens kept) to the text's embeddings; faithful, about 32 forward and
  backward passes per text. Torch backends only.
- ``gradient-x-input`` (captum): one forward and backward pass; cheapest, roughest.
- ``occlusion`` (leave one word out): the probability lost when a word is removed; model-
  agnostic (ONNX backends too), one batched forward pass per word; the bulk method.

Subword pieces are merged back into the words of the text the model saw (the run's own
preprocessing applied), so every result lists words with their character spans; a word
past max_length gets no attribution (the model never saw it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sentitune.config import EXPLAIN_METHODS
from sentitune.errors import SentituneError

METHODS = EXPLAIN_METHODS
GRADIENT_METHODS = ("integrated-gradients", "gradient-x-input")
BULK_METHOD = "occlusion"
IG_STEPS = 32
_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def words_of(text: str) -> list[tuple[int, int]]:
    """Character spans of the words (and punctuation marks) of `text`."""
    return [m.span() for m in _WORD.finditer(text)]


def merge_pieces(spans: Sequence[tuple[int, int] | None], token_scores: np.ndarray,
                 words: Sequence[tuple[int, int]]) -> np.ndarray:
    """Sum each token's score into the word holding the token's last character."""
    scores = np.zeros(len(words))
    ends = np.array([end for _, end in words])
    for span, score in zip(spans, token_scores, strict=True):
        if span is None or span[1] <= span[0]:
            continue
        w = int(np.searchsorted(ends, span[1]))  # the first word ending at or after it
        if w < len(words) and words[w][0] < span[1]:
            scores[w] += float(score)
    return scores


def _check(classifier, method: str) -> None:
    """A method this classifier can run (None: only the method's name is checked)."""
    if method not in METHODS:
        raise SentituneError(f"--method must be one of {', '.join(METHODS)}, not '{method}'")
    if classifier is None:
        return
    if method in GRADIENT_METHODS and len(classifier.members) > 1:
        raise SentituneError(f"{method} follows one model's gradients; an ensemble is "
                             "explained with --method occlusion")
    if method in GRADIENT_METHODS and classifier.model is None:
        raise SentituneError(
            f"{method} needs the model's gradients, which the {classifier.backend.name} backend "
            "does not have; use --backend torch, or --method occlusion")
    if method in GRADIENT_METHODS:
        try:
            import captum  # noqa: F401
        except ImportError:
            raise SentituneError(f"{method} needs captum: pip install 'sentitune[explain]'"
                                 ) from None


def _targets(classifier, texts: list[str], target: str | None, batch_size: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """(label index, its probability) per text: `target` when named, else the top label."""
    probs = classifier.predict_proba(texts, batch_size)
    if target is None:
        chosen = probs.argmax(axis=1)
    elif target in classifier.labels:
        chosen = np.full(len(texts), classifier.labels.index(target))
    else:
        raise SentituneError(f"unknown label '{target}'; the run's labels: "
                             f"{', '.join(classifier.labels)}")
    return chosen, probs[np.arange(len(texts)), chosen]


def _occlusion(classifier, texts: list[str], chosen: np.ndarray, base: np.ndarray,
               words: list[list[tuple[int, int]]], batch_size: int) -> list[np.ndarray]:
    variants, owners = [], []
    for i, (text, spans) in enumerate(zip(texts, words, strict=True)):
        for start, end in spans:
            variants.append(" ".join((text[:start] + text[end:]).split()))
            owners.append(i)
    probs = classifier.predict_proba(variants, batch_size) if variants else np.zeros((0, 1))
    owners_arr = np.asarray(owners, dtype=int)
    drops = base[owners_arr] - probs[np.arange(len(variants)), chosen[owners_arr]]
    out, at = [], 0
    for spans in words:
        out.append(drops[at:at + len(spans)])
        at += len(spans)
    return out


def _gradients(classifier, texts: list[str], chosen: np.ndarray, method: str,
               words: list[list[tuple[int, int]]], steps: int) -> list[np.ndarray]:
    import torch
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    model = classifier.model
    names = classifier.backend.input_names
    multilabel = classifier.task == "multilabel"

    def probability(input_ids, attention_mask, token_type_ids):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
                  "token_type_ids": token_type_ids}
        logits = model(**{k: v for k, v in inputs.items() if k in names}).logits.float()
        return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)

    layer = model.get_input_embeddings()
    explainer = (LayerIntegratedGradients(probability, layer) if method == GRADIENT_METHODS[0]
                 else LayerGradientXActivation(probability, layer))
    pad = classifier.encoder.pad_id
    out = []
    for text, label, spans in zip(texts, chosen, words, strict=True):
        ids, type_ids, pieces = classifier.encoder.pieces(text)
        batch = {k: torch.from_numpy(v).to(model.device)
                 for k, v in classifier.encoder.pad([ids], [type_ids]).items()}
        extra = (batch["attention_mask"], batch["token_type_ids"])
        if method == GRADIENT_METHODS[0]:
            baseline = batch["input_ids"].clone()
            content = torch.tensor([span is not None for span in pieces], device=model.device)
            baseline[0, content] = pad
            found = explainer.attribute(batch["input_ids"], baselines=baseline,
                                        additional_forward_args=extra, target=int(label),
                                        n_steps=steps, internal_batch_size=steps)
        else:
            found = explainer.attribute(batch["input_ids"], additional_forward_args=extra,
                                        target=int(label))
        token_scores = found.sum(dim=-1)[0].detach().float().cpu().numpy()
        out.append(merge_pieces(pieces, token_scores, spans))
    return out


def explain(classifier, texts: Sequence[str] | str, method: str = "integrated-gradients", *,
            target: str | None = None, batch_size: int = 64, steps: int = IG_STEPS,
            backend: str = "torch", output: str | Path | None = None,
            within_chars: int | None = None) -> list[dict]:
    """Word attributions for each text's top label (or `target`), in input order.

    `classifier` is a loaded Classifier, or a run directory loaded with `backend`. Each
    result: text (as the model saw it, after the run's preprocessing), label, score (its
    probability), method and words, each {word, start, end, attribution}: the share of the
    label's probability the word accounts for (positive: it supports the label). `output`
    also writes the results as JSONL. `within_chars` lists only the words ending within
    that many characters (a report showing a text's start need not pay for the rest).
    """
    if isinstance(classifier, str | Path):
        from sentitune.inference.classifier import Classifier

        _check(None, method)  # before the model loads
        classifier = Classifier.from_pretrained(classifier, backend=backend)
    _check(classifier, method)
    texts = [texts] if isinstance(texts, str) else list(texts)
    seen = classifier.run.preprocess(texts)
    chosen, base = _targets(classifier, seen, target, batch_size)
    limit = within_chars if within_chars is not None else float("inf")
    words = [[span for span in words_of(text) if span[1] <= limit] for text in seen]
    if method == BULK_METHOD:
        scores = _occlusion(classifier, seen, chosen, base, words, batch_size)
    else:
        with classifier.members[0]._lock:  # one pass through the model at a time, as in scoring
            scores = _gradients(classifier, seen, chosen, method, words, steps)
    found = [{"text": text, "label": classifier.labels[int(label)], "score": float(p),
              "method": method,
              "words": [{"word": text[s:e], "start": s, "end": e, "attribution": float(a)}
                        for (s, e), a in zip(spans, attributions, strict=True)]}
             for text, label, p, spans, attributions in zip(seen, chosen, base, words, scores,
                                                            strict=True)]
    if output is not None:
        from sentitune import files

        files.write_jsonl(output, found)
    return found


def top_words(explanation: dict, share: float) -> list[int]:
    """Indices of the `share` of words with the highest attribution (at least one)."""
    attributions = [w["attribution"] for w in explanation["words"]]
    k = max(1, round(share * len(attributions))) if attributions else 0
    return sorted(np.argsort(attributions)[::-1][:k].tolist())


def shown(explanation: dict) -> str:
    """One explanation as a line: label, probability, method, each word(attribution)."""
    words = " ".join(f"{w['word']}({w['attribution']:+.3f})" for w in explanation["words"])
    return (f"{explanation['label']} {explanation['score']:.3f} ({explanation['method']}): "
            f"{words}")
