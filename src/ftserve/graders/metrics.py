"""The ``text_similarity`` metrics, each a score in [0, 1] of ``text`` against ``reference``.

The libraries load on first use: the API process imports this module at startup."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

METRICS = (
    "cosine",
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
)
# Served offline only where no external resource is needed.
REFUSED = {
    "cosine": "needs an embeddings model, which this server does not serve",
    "meteor": "needs the WordNet corpus, which this server does not ship (it works offline)",
}


def fuzzy_match(text: str, reference: str) -> float:
    # Normalised Indel similarity (Levenshtein without substitutions), as rapidfuzz's ratio.
    from rapidfuzz import fuzz

    return float(fuzz.ratio(text, reference)) / 100.0


def bleu(text: str, reference: str) -> float:
    import sacrebleu

    # sacrebleu scores in percent; a perfect match comes back a rounding error above 100.
    return min(1.0, float(sacrebleu.sentence_bleu(text, [reference]).score) / 100.0)


def gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    return float(sentence_gleu([reference.split()], text.split()))


@cache
def _rouge(kind: str) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind])


def _rouge_metric(kind: str) -> Callable[[str, str], float]:
    def score(text: str, reference: str) -> float:
        # F-measure of the prediction (text) against the target (reference).
        return float(_rouge(kind).score(reference, text)[kind].fmeasure)

    return score


SCORERS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    **{f"rouge_{n}": _rouge_metric(f"rouge{n}") for n in range(1, 6)},
    "rouge_l": _rouge_metric("rougeL"),
}
