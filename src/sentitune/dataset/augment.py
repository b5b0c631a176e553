"""Text augmentation: seeded copies of training texts (`--augment N --augment-methods ...`).

Model-free methods that work offline, as in Tang et al. 2019 ("Distilling Task-Specific
Knowledge from BERT into Simple Neural Networks") and TinyBERT, plus two aimed at the
behavioural tests:

- mask: each word, with probability P_MASK, becomes the tokenizer's mask token;
- neighbours: each content word, with probability P_SWAP, becomes one of its K_NEIGHBOURS
  nearest neighbours (cosine) among the whole-word tokens of the model's own input embeddings
  (TinyBERT used GloVe; the model's embeddings need no download);
- ngram: with probability P_NGRAM the copy is cut to a random n-gram, n in 1..5;
- identity: every identity term (she/he, Muslim/Christian, ...) swapped for another of its
  group: sentiment must not depend on it;
- negation: with probability P_NEGATE a negation is removed ("is not" -> "is") or added
  after the first auxiliary ("is" -> "is not");
- frames: the copy is put inside a sentence frame (FRAMES) that negates it at a distance
  ("It is not true that ..."), asks and answers it ("... ? Hardly."), reverses an
  expectation ("I was told that ..., but that was wrong."), affirms it (some with a negation
  word that does not negate: "Nobody can deny that ..."), or names an identity term ("The
  muslim audience agreed that ..."). A frame keeps or flips a binary label (train: binary
  tasks only).

Mask and neighbours draw per word from one uniform number, as Tang et al. do; the other
methods follow in the order above. The frames and their fillers are our own and share no
wording with the behavioural suite (sentitune.evaluation.suite), whose negation, question
and fairness tests then measure whether a construction was learned, not whether its
sentences were seen; the identity frames draw from this module's short list, so the suite's
other terms (Sikh, transgender, ...) are never framed. A copy equal to its source is
dropped. Everything is a pure function of (texts, methods, seed, mask token, neighbours):
the same input gives the same copies.

Labels: `train` takes identity and mask (config.LABEL_KEEPING_AUGMENTATIONS), whose copies
keep their source's label: an identity swap must not change sentiment, and masking one word
in ten rarely hides all of it. It also takes frames, whose rule labels each copy: a keeping
frame keeps the source's label, a flipping one gives the other label. Flipping a negative is
SST-2's own practice: of its training phrases of up to eight words with a negation before a
sentiment word, 23 of 27 negated negatives ("is n't a bad film") are labelled positive and
67 of 69 negated positives negative. `distill` takes every method: its teachers label each
copy, the classic transfer set; its default leaves frames out, which exist to teach what the
teachers get wrong. Measured on 4,000 SST-2 phrases, the share of copies
whose full-data teacher label differs from their source's (augment_labels-minilm-cpu.json):
identity 2%, mask 8%, neighbours 3%, ngram 26%, negation 37% (65% of phrases up to six
words, 21% of those over fifteen: a negation flips a short phrase, rarely a long sentence).
Neighbours changes few labels, yet train refuses it: a word's neighbours include its
antonyms ("good" ~ "bad", "love" ~ "hate"), so the copies it changes carry a false label,
where a masked copy's label is only less certain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sentitune.config import (
    AUGMENT_METHODS,
    LABEL_KEEPING_AUGMENTATIONS,
    RULE_LABELLED_AUGMENTATIONS,
    TRANSFER_SET_AUGMENTATIONS,
    TrainingConfig,
)
from sentitune.errors import SentituneError

P_MASK = 0.1
P_SWAP = 0.1
P_NGRAM = 0.25
P_NEGATE = 0.5
MAX_NGRAM = 5
K_NEIGHBOURS = 10

# Groups of interchangeable identity terms (lower case); a term is swapped for another of
# its group. Small on purpose: the behavioural suite owns the long lists. The adjectives
# also fill the identity frames ("the {identity} audience").
PERSON_GROUPS: tuple[tuple[str, ...], ...] = (
    ("he", "she"), ("man", "woman"), ("men", "women"), ("boy", "girl"), ("boys", "girls"),
    ("father", "mother"), ("son", "daughter"), ("brother", "sister"), ("husband", "wife"),
    ("king", "queen"), ("mr.", "ms."),
)
ADJECTIVE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("christian", "muslim", "jewish", "hindu", "buddhist", "atheist"),
    ("american", "mexican", "chinese", "indian", "nigerian", "french", "russian", "japanese"),
    ("black", "white", "asian", "latino"),
    ("gay", "straight"), ("young", "old"),
)
IDENTITY_GROUPS = PERSON_GROUPS + ADJECTIVE_GROUPS
IDENTITY: dict[str, tuple[str, ...]] = {
    term: tuple(t for t in group if t != term) for group in IDENTITY_GROUPS for term in group
}
# Negations a copy drops ("is not good" -> "is good"), and auxiliaries a copy negates.
NEGATIONS = frozenset({"not", "n't", "never", "no"})
# Not "'s": in "the film 's score" it is a possessive.
AUXILIARIES = frozenset({"is", "are", "was", "were", "am", "be", "do", "does", "did", "can",
                         "could", "will", "would", "should", "has", "have", "had", "'re"})
_CONTRACTED = re.compile(r"^(\w+?)n't$", re.IGNORECASE)  # isn't, doesn't (not can't, won't)
_WORD = re.compile(r"^(\W*)(.+?)(\W*)$")

# Sentence frames around a text, each with what it does to a binary label: keep or flip.
# {} is the text, {filler} a neutral aside, {identity} an identity adjective. Negating and
# affirming frames come in about equal numbers, and negation words appear in keeping frames
# too, so that "a negation word" alone predicts nothing; identity frames all keep, so each
# term is seen with both labels equally often (counterfactual data augmentation).
FRAMES: tuple[tuple[str, bool], ...] = (
    ("It is not true that {}", True),
    ("I would never say that {}", True),
    ("Nobody could honestly claim that {}", True),
    ("I do not believe, {filler}, that {}", True),
    ("It would be wrong, {filler}, to say that {}", True),
    ("Don't let anyone tell you that {}", True),
    ("Would I say that {}? No.", True),
    ("{}? Hardly.", True),
    ("Is it fair to say that {}? Not really.", True),
    ("I was told that {}, but that was wrong.", True),
    ("I had expected that {}, but I was mistaken.", True),
    ("It is true that {}", False),
    ("I really do believe, {filler}, that {}", False),
    ("Nobody can deny that {}", False),
    ("I can't deny that {}", False),
    ("There is no doubt that {}", False),
    ("Would I say that {}? Yes.", False),
    ("{}? Absolutely.", False),
    ("Is it fair to say that {}? Yes, it is.", False),
    ("I was told that {}, and that was right.", False),
    ("I had expected that {}, and I was not mistaken.", False),
    ("The {identity} audience agreed that {}", False),
    ("My {identity} friends told me that {}", False),
    ("{} -- a review by {identity} fans.", False),
    ("Speaking for {identity} viewers, {filler}: {}", False),
)
FILLERS = ("all things considered", "to put it plainly", "after a second viewing",
           "if I am being fair", "whatever the trailer suggests", "in the end",
           "having slept on it", "for what it is worth")
IDENTITY_ADJECTIVES = tuple(term for group in ADJECTIVE_GROUPS for term in group)


@dataclass(frozen=True)
class Copies:
    """Augmented copies of training texts."""

    texts: list[str]
    sources: list[int]  # the index of each copy's source text
    flipped: list[bool]  # whether a frame flipped each copy's binary label (FRAMES)

    def labels(self, source_labels: Sequence) -> list:
        """Each copy's label for train: its source's (of any task: a multi-label row's list
        too), or the other of the two binary labels where a frame flipped it."""
        return [1 - int(source_labels[s]) if flip else source_labels[s]
                for s, flip in zip(self.sources, self.flipped, strict=True)]


def resolve_methods(settings: TrainingConfig, taught: bool, task: str) -> tuple[str, ...]:
    """The methods a run uses: the ones asked for, else the verb's default (train: the
    label-keeping ones, distill: the transfer-set ones); train refuses those whose copies'
    labels it cannot know, and frames on a task that is not binary (distill's teachers
    label its frames on any task)."""
    methods = settings.augment_methods or (TRANSFER_SET_AUGMENTATIONS if taught
                                           else LABEL_KEEPING_AUGMENTATIONS)
    known = LABEL_KEEPING_AUGMENTATIONS + RULE_LABELLED_AUGMENTATIONS
    changing = [m for m in methods if m not in known]
    if not taught and changing:
        raise SentituneError(
            f"--augment-methods {','.join(changing)} can change a text's label, which train "
            f"cannot check; train with {','.join(known)}, or use them with sentitune "
            "distill, whose teachers label every copy")
    if not taught and "frames" in methods and task != "binary":
        raise SentituneError(
            f"--augment-methods frames negates or affirms a text, which gives a label only "
            f"for a binary task; this data is {task}: leave frames out")
    return tuple(methods)


def _match_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def swap_identity(words: list[str], rng: np.random.Generator) -> list[str]:
    out = []
    for word in words:
        lead, core, tail = _WORD.match(word).groups() if _WORD.match(word) else ("", word, "")
        others = IDENTITY.get(core.lower())
        out.append(word if others is None else
                   lead + _match_case(others[rng.integers(len(others))], core) + tail)
    return out


def negate(words: list[str]) -> list[str]:
    """Drop the first negation, else add "not" after the first auxiliary; unchanged when
    the text has neither."""
    for i, word in enumerate(words):
        if word.lower() in NEGATIONS:
            return words[:i] + words[i + 1:]
        contracted = _CONTRACTED.match(word)
        if contracted and contracted.group(1).lower() in AUXILIARIES:
            return words[:i] + [contracted.group(1)] + words[i + 1:]
    for i, word in enumerate(words):
        if word.lower() in AUXILIARIES:
            return words[:i + 1] + ["not"] + words[i + 1:]
    return words


def frame(text: str, rng: np.random.Generator) -> tuple[str, bool]:
    """`text` inside a random frame of FRAMES, and whether the frame flips its label."""
    template, flips = FRAMES[rng.integers(len(FRAMES))]
    filled = template.replace("{filler}", FILLERS[rng.integers(len(FILLERS))]).replace(
        "{identity}", IDENTITY_ADJECTIVES[rng.integers(len(IDENTITY_ADJECTIVES))])
    # A full stop inside a frame ends its sentence early ("that ... film ., but").
    return filled.replace("{}", text.strip().rstrip(" .")), flips


def augment_text(text: str, methods: Sequence[str], rng: np.random.Generator,
                 mask_token: str, neighbours: dict[str, list[str]] | None = None) -> str:
    """One augmented copy of `text` (see the module docstring for the rules)."""
    words = text.split()
    if not words:
        return text
    neighbours = neighbours or {}
    p_mask = P_MASK if "mask" in methods else 0.0
    p_swap = P_SWAP if "neighbours" in methods else 0.0
    if p_mask or p_swap:
        changed = []
        for word in words:
            draw = rng.random()
            options = neighbours.get(word.lower())
            if draw < p_mask:
                changed.append(mask_token)
            elif draw < p_mask + p_swap and options:
                changed.append(_match_case(options[rng.integers(len(options))], word))
            else:
                changed.append(word)
        words = changed
    if "ngram" in methods and rng.random() < P_NGRAM and len(words) > 1:
        n = int(rng.integers(1, min(MAX_NGRAM, len(words) - 1) + 1))
        start = int(rng.integers(len(words) - n + 1))
        words = words[start:start + n]
    if "identity" in methods:
        words = swap_identity(words, rng)
    if "negation" in methods and rng.random() < P_NEGATE:
        words = negate(words)
    return " ".join(words)


def augment_texts(texts: Sequence[str], copies: int, methods: Sequence[str], seed: int,
                  mask_token: str, neighbours: dict[str, list[str]] | None = None) -> Copies:
    """`copies` augmented versions of each text, those equal to their source or to an
    earlier copy dropped; frames, when asked for, go around the other methods' result."""
    unknown = [m for m in methods if m not in AUGMENT_METHODS]
    if unknown or copies < 0:
        raise SentituneError(f"augmentation takes copies >= 0 and methods among "
                             f"{', '.join(AUGMENT_METHODS)}; got {copies}, {', '.join(methods)}")
    rng = np.random.default_rng(seed)
    seen = set(texts)
    found = Copies([], [], [])
    for _ in range(copies):
        for index, text in enumerate(texts):
            copy = augment_text(text, methods, rng, mask_token, neighbours)
            flips = False
            if "frames" in methods:
                copy, flips = frame(copy, rng)
            if copy not in seen:
                seen.add(copy)
                found.texts.append(copy)
                found.sources.append(index)
                found.flipped.append(flips)
    return found


def _vocabulary_word(token: str) -> str | None:
    """The word a vocabulary entry spells when it is a whole word (BPE's leading-space
    markers removed; WordPiece continuations and special tokens are not)."""
    word = token.lstrip("\u0120\u2581")  # GPT-2 / RoBERTa 'Ġ', SentencePiece '▁'
    return word if len(word) >= 2 and word.isalpha() and not token.startswith("##") else None


def embedding_neighbours(words: Iterable[str], vocabulary: dict[str, int], matrix: np.ndarray,
                         k: int = K_NEIGHBOURS, chunk: int = 1024) -> dict[str, list[str]]:
    """Each of `words` that is a whole-word token -> its k nearest other whole words by
    cosine similarity of the rows of `matrix` (an input embedding matrix). Function words
    (scikit-learn's English stop words, negations among them) neither change nor replace:
    their neighbours are other function words ("and" ~ "is"), which only garble a text."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    by_word: dict[str, int] = {}
    for token, index in sorted(vocabulary.items(), key=lambda item: item[1]):
        word = _vocabulary_word(token)
        if word is not None and word.lower() not in ENGLISH_STOP_WORDS:
            by_word.setdefault(word.lower(), index)
    names = list(by_word)
    if len(names) < 2:
        return {}
    vectors = matrix[[by_word[w] for w in names]].astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    position = {w: i for i, w in enumerate(names)}
    queries = sorted({w.lower() for w in words} & set(position))
    k = min(k, len(names) - 1)
    found: dict[str, list[str]] = {}
    for start in range(0, len(queries), chunk):
        batch = queries[start:start + chunk]
        rows = np.array([position[w] for w in batch])
        similarity = vectors[rows] @ vectors.T
        similarity[np.arange(len(batch)), rows] = -np.inf  # a word is not its own neighbour
        top = np.argpartition(-similarity, k, axis=1)[:, :k]
        for word, row, picked in zip(batch, similarity, top, strict=True):
            found[word] = [names[j] for j in picked[np.argsort(-row[picked], kind="stable")]]
    return found


def augmented_copies(texts: Sequence[str], model, tokenizer, settings: TrainingConfig,
                     taught: bool, task: str) -> tuple[Copies, dict]:
    """The training copies a run asks for (none with --augment 0) and what the run records
    about them."""
    if settings.augment == 0:
        return Copies([], [], []), {}
    methods = resolve_methods(settings, taught, task)
    neighbours = None
    if "neighbours" in methods:
        matrix = model.get_input_embeddings().weight.detach().float().cpu().numpy()
        words = {w.lower() for text in texts for w in text.split()}
        neighbours = embedding_neighbours(words, tokenizer.get_vocab(), matrix)
    mask = tokenizer.mask_token or tokenizer.unk_token
    copies = augment_texts(texts, settings.augment, methods, settings.seed, mask, neighbours)
    labels = ("teachers" if taught else
              "source text's, flipped by negating frames" if "frames" in methods else
              "source text's")
    return copies, {"methods": list(methods), "copies_added": len(copies.texts),
                    "labels": labels}
