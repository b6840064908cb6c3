"""Word error rate, for tests that check what a recognizer heard."""

from __future__ import annotations

import re


def normalize_words(text: str) -> list[str]:
    """Lower case, punctuation dropped (apostrophes inside words kept)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words in the reference."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else float(len(hyp))
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, heard in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard))
        previous = current
    return previous[-1] / len(ref)
