"""Which rows look mislabelled (cleanlab) and which texts repeat with other labels."""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from sentitune.auditing.rows import AuditRows
from sentitune.errors import SentituneError

MULTILABEL_CUT = 0.5  # a label is suggested for a multi-label row from this probability


def _import_cleanlab():
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        raise SentituneError("sentitune audit needs cleanlab: pip install 'sentitune[audit]'"
                             ) from None


def label_issues(rows: AuditRows, probs: np.ndarray) -> list[dict]:
    """cleanlab's label issues, most certain first: row, text, given and suggested label,
    confidence (out-of-fold probability of the suggestion) and label quality (of the given
    label; low is suspicious)."""
    _import_cleanlab()
    targets = rows.targets()
    if rows.task == "multilabel":
        from cleanlab.multilabel_classification.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        given = [list(ids) for ids in rows.frame["label"]]
        ranked = find_label_issues(labels=given, pred_probs=probs,
                                   return_indices_ranked_by="self_confidence")
        quality = get_label_quality_scores(given, probs)
        suggested = probs >= MULTILABEL_CUT
        confidence = np.where(suggested, probs, 1 - probs).mean(axis=1)
        suggestions = [list(np.flatnonzero(row)) for row in suggested]
    else:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        ranked = find_label_issues(targets, probs, return_indices_ranked_by="self_confidence")
        quality = get_label_quality_scores(targets, probs)
        suggestions = probs.argmax(axis=1)
        confidence = probs.max(axis=1)
    return [{"row": int(i), "text": rows.frame["text"].iat[i],
             "given_label": rows.names_of(rows.frame["label"].iat[i]),
             "suggested_label": rows.names_of(suggestions[i]),
             "confidence": round(float(confidence[i]), 4),
             "label_quality": round(float(quality[i]), 4)} for i in ranked]


def quality_scores(rows: AuditRows, probs: np.ndarray) -> np.ndarray:
    """cleanlab's label quality of every row (low: likely wrong), for ranking curves."""
    _import_cleanlab()
    if rows.task == "multilabel":
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        return get_label_quality_scores([list(ids) for ids in rows.frame["label"]], probs)
    from cleanlab.rank import get_label_quality_scores

    return get_label_quality_scores(rows.targets(), probs)


_NOT_WORD = re.compile(r"[\W_]+")


def _key(text: str) -> str:
    """Texts that differ only in case, spacing and punctuation share a key."""
    return _NOT_WORD.sub(" ", text.lower()).strip()


def _label_key(label) -> tuple:
    return tuple(label) if isinstance(label, list | tuple | np.ndarray) else (int(label),)


def conflicting_duplicates(rows: AuditRows, embeddings: np.ndarray | None,
                           threshold: float) -> list[dict]:
    """Exact duplicates (up to case, spacing, punctuation) and near duplicates (cosine of
    embeddings >= threshold) whose labels disagree; near pairs inside an exact group are
    not repeated."""
    texts, labels = rows.texts, list(rows.frame["label"])
    groups: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        groups[_key(text)].append(i)
    found = []
    for members in groups.values():
        if len({_label_key(labels[i]) for i in members}) > 1:
            found.append(_group("exact", members, rows, 1.0))
    if embeddings is None or len(texts) < 2:
        return found
    from sklearn.neighbors import NearestNeighbors

    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    search = NearestNeighbors(n_neighbors=min(6, len(texts)), metric="cosine",
                              algorithm="brute").fit(unit)
    distances, neighbours = search.kneighbors(unit)
    seen = set()
    for i, (dist_row, near_row) in enumerate(zip(distances, neighbours, strict=True)):
        for distance, j in zip(dist_row, near_row, strict=True):
            pair = (min(i, int(j)), max(i, int(j)))
            similarity = 1 - float(distance)
            if (i == j or similarity < threshold or pair in seen
                    or _key(texts[i]) == _key(texts[j])
                    or _label_key(labels[i]) == _label_key(labels[j])):
                continue
            seen.add(pair)
            found.append(_group("near", list(pair), rows, similarity))
    return found


def _group(kind: str, members: list[int], rows: AuditRows, similarity: float) -> dict:
    return {"kind": kind, "similarity": round(similarity, 4), "rows": members,
            "texts": [rows.frame["text"].iat[i] for i in members],
            "labels": [rows.names_of(rows.frame["label"].iat[i]) for i in members]}
