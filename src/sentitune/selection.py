"""Which unlabeled texts are worth a person's time: active-learning selection.

    margin   the smallest gap between the two most probable classes (multi-label: a label
             probability nearest its decision threshold) -- uncertainty sampling, which
             Schroeder et al. (2022) found strong for fine-tuned transformers
    entropy  the most spread-out probabilities
    random   a seeded random sample: the baseline every strategy must beat
    diverse  uncertainty plus coverage: the most uncertain texts (ten per wanted one) are
             clustered by the model's own sentence embeddings (k-means, one cluster per
             wanted text) and each cluster gives its most uncertain member, so a batch is
             not ten near-copies of one confusing phrase

`choose` is the rule on arrays (the active-learning benchmark calls it); `select` scores a
file with a run and writes the next texts to label, most useful first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentitune.errors import SentituneError

STRATEGIES = ("margin", "entropy", "random", "diverse")
DIVERSE_POOL_FACTOR = 10  # diverse clusters this many uncertain candidates per wanted text


def uncertainty(probs: np.ndarray, task: str, strategy: str,
                cuts: np.ndarray | None = None) -> np.ndarray:
    """How unsure the model is of each row (higher: more worth labelling)."""
    probs = np.asarray(probs, dtype=np.float64)
    eps = 1e-12
    if task == "multilabel":
        cuts = np.full(probs.shape[1], 0.5) if cuts is None else np.asarray(cuts, float)
        if strategy == "entropy":
            p = np.clip(probs, eps, 1 - eps)
            return -(p * np.log(p) + (1 - p) * np.log(1 - p)).sum(axis=1)
        return -np.abs(probs - cuts).min(axis=1)
    if strategy == "entropy":
        return -(probs * np.log(np.clip(probs, eps, 1))).sum(axis=1)
    top2 = np.sort(probs, axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


def choose(probs: np.ndarray, budget: int, strategy: str, *, task: str = "binary",
           embeddings: np.ndarray | None = None, cuts: np.ndarray | None = None,
           seed: int = 0) -> np.ndarray:
    """Indices of the `budget` rows to label next, most useful first."""
    if strategy not in STRATEGIES:
        raise SentituneError(f"--strategy must be one of {', '.join(STRATEGIES)}, "
                             f"not '{strategy}'")
    if budget < 1:
        raise SentituneError(f"--budget must be at least 1, got {budget}")
    n = len(probs)
    budget = min(budget, n)
    if strategy == "random":
        return np.random.default_rng(seed).permutation(n)[:budget]
    scores = uncertainty(probs, task, "entropy" if strategy == "entropy" else "margin", cuts)
    ranked = np.argsort(-scores, kind="stable")
    if strategy != "diverse" or budget == n:
        return ranked[:budget]
    if embeddings is None:
        raise SentituneError("--strategy diverse needs the model's embeddings")
    from sklearn.cluster import KMeans

    pool = ranked[:min(n, budget * DIVERSE_POOL_FACTOR)]
    vectors = np.asarray(embeddings, dtype=np.float64)[pool]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12  # cosine geometry
    clusters = KMeans(n_clusters=budget, n_init=3, random_state=seed).fit_predict(vectors)
    picked: list[int] = []
    for cluster in range(budget):
        members = pool[clusters == cluster]  # pool is ordered, so [0] is the most uncertain
        if len(members):
            picked.append(int(members[0]))
    # k-means leaves no cluster empty in practice; fill up from the ranking if it ever does.
    chosen = set(picked)
    picked += [int(i) for i in pool if int(i) not in chosen][:budget - len(picked)]
    return np.array(sorted(picked, key=lambda i: -scores[i]))


def pooled_outputs(model, batches) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, logits) of a transformers classifier over `batches` of (row indices,
    input tensors): the mean-pooled last hidden state is the model's own sentence
    embedding, and it comes from the same forward pass as the logits."""
    import torch

    vectors: dict[int, np.ndarray] = {}
    logits: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for picked, inputs in batches:
            out = model(**inputs, output_hidden_states=True)
            mask = inputs["attention_mask"].unsqueeze(-1).float()
            pooled = (out.hidden_states[-1] * mask).sum(1) / mask.sum(1).clamp(min=1)
            for row, vector, z in zip(picked, pooled.float().cpu().numpy(),
                                      out.logits.float().cpu().numpy(), strict=True):
                vectors[int(row)], logits[int(row)] = vector, z
    order = sorted(vectors)
    return (np.array([vectors[i] for i in order]), np.array([logits[i] for i in order]))


def embeddings_and_probabilities(classifier, texts: Sequence[str], batch_size: int = 64
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """The run's sentence embeddings (an ensemble's first member's) and its class
    probabilities for `texts`; torch backends only."""
    import torch

    from sentitune.inference.classifier import length_batches
    from sentitune.metrics import probabilities

    model = classifier.model
    if model is None:
        raise SentituneError("--strategy diverse needs the model's hidden states; use "
                             "--backend torch")
    ids, type_ids, _ = classifier.encoder.encode(classifier.run.preprocess(list(texts)))
    names = classifier.backend.input_names

    def batches():
        for picked in length_batches([len(row) for row in ids], batch_size):
            batch = classifier.encoder.pad([ids[i] for i in picked],
                                           [type_ids[i] for i in picked])
            yield picked, {k: torch.from_numpy(batch[k]).to(model.device) for k in names}

    vectors, logits = pooled_outputs(model, batches())
    if len(classifier.members) > 1:  # an ensemble answers with its mean
        return vectors, classifier.predict_proba(texts, batch_size)
    return vectors, probabilities(logits.astype(np.float64), classifier.task)


@dataclass(frozen=True)
class Selection:
    """What `select` wrote."""

    output: Path
    selected: int
    candidates: int  # unlabeled texts considered (empty, duplicate and stored ones left out)
    pushed: int  # texts added to the label store (0 without one)


def _candidates(path: Path, classifier, text_column: str | None,
                skip_hashes: set[str]) -> list[str]:
    from sentitune.dataset.sources import read_table
    from sentitune.inference.columns import text_column_for
    from sentitune.labelstore.store import text_hash

    frame = read_table(path)
    column = text_column_for(classifier, [str(c) for c in frame.columns], text_column)
    texts = [t.strip() for t in frame[column] if isinstance(t, str) and t.strip()]
    return [t for t in dict.fromkeys(texts) if text_hash(t) not in skip_hashes]


def select(run_dir: str | Path, unlabeled: str | Path, *, budget: int, strategy: str,
           output: str | Path, store: str | None = None, text_column: str | None = None,
           seed: int = 0, batch_size: int = 64, backend: str = "torch") -> Selection:
    """Score `unlabeled` with the run and write the `budget` texts to label next (JSONL:
    `text`, the model's answer, `uncertainty`, `rank`), most useful first; with `store`
    (a label store path or URL) also add them to it, leaving out texts it already holds."""
    from sentitune import files
    from sentitune.inference.classifier import Classifier

    output = Path(output)
    if output.suffix.lower() != ".jsonl":
        raise SentituneError(f"--output must end in .jsonl, not '{output.name}'")
    if strategy not in STRATEGIES:
        raise SentituneError(f"--strategy must be one of {', '.join(STRATEGIES)}, "
                             f"not '{strategy}'")
    if budget < 1:
        raise SentituneError(f"--budget must be at least 1, got {budget}")
    classifier = Classifier.from_pretrained(run_dir, backend=backend)
    label_store = None
    if store is not None:
        from sentitune.labelstore.store import LabelStore

        label_store = LabelStore.open(store, labels=classifier.labels, task=classifier.task)
    texts = _candidates(Path(unlabeled), classifier, text_column,
                        label_store.hashes() if label_store else set())
    if not texts:
        raise SentituneError(f"{unlabeled} has no unlabeled texts left to choose from")
    cuts = classifier.label_thresholds() if classifier.task == "multilabel" else None
    if strategy == "diverse":
        vectors, probs = embeddings_and_probabilities(classifier, texts, batch_size)
    else:
        vectors, probs = None, classifier.predict_proba(texts, batch_size)
    picked = choose(probs, budget, strategy, task=classifier.task, embeddings=vectors,
                    cuts=cuts, seed=seed)
    scores = uncertainty(probs, classifier.task,
                         "entropy" if strategy == "entropy" else "margin", cuts)
    answers = classifier.predict([texts[i] for i in picked], batch_size=batch_size)
    records = [{**answer, "uncertainty": round(float(scores[i]), 6), "rank": rank,
                "strategy": strategy}
               for rank, (i, answer) in enumerate(zip(picked, answers, strict=True))]
    files.write_jsonl(output, records)
    pushed = 0
    if label_store is not None:
        pushed = label_store.add(records, source=f"select:{strategy}",
                                 run=classifier.run.path.name).added
    return Selection(output, len(records), len(texts), pushed)
