"""ROUGE-L F1 as KAgentBench computes it, offline and dependency-free.

The original scorer (``benchmark_eval.py``) does::

    tokens = nltk.word_tokenize(s)             # needs the NLTK ``punkt`` download
    tokens -> split every token containing a Unicode "Lo" character into characters
    rouge_chinese.Rouge().get_scores(" ".join(pred_tokens), " ".join(label_tokens))[0]["rouge-l"]["f"]

This module reproduces that without NLTK or ``rouge_chinese``:

* ``word_tokenize`` is a small regex approximating NLTK's Treebank ``word_tokenize``: words
  (Unicode ``\\w`` runs, hyphenated words kept whole), numbers (``3.14``, ``1,000``), English
  contractions split as NLTK does (``don't`` -> ``do n't``, ``it's`` -> ``it 's``), ``...`` and
  ``--`` kept whole, every other punctuation character on its own.
  Known differences from NLTK: no ``punkt`` sentence splitting first (NLTK only uses it to
  decide whether a sentence-final period is split off, which we always do unless it is part of a
  number or ``...``), double quotes are kept as ``"`` (NLTK rewrites them to `````` / ``''``),
  abbreviations such as ``U.S.`` and ``Mr.`` are split at the period (NLTK keeps some whole), and
  rare Treebank special cases (``cannot`` -> ``can not``, ``gonna`` ...) are not applied.
  For CJK text the result is the same: a CJK run is one ``\\w`` run and is then split into
  characters by ``mixed_tokenize``.
* ``rouge_l_f`` follows ``rouge_chinese`` (a fork of pltrdy ``rouge``): the space-joined string is
  cut into sentences after Chinese/Western sentence-final marks (``。！？?`` and ``……`` /
  ``......``; pltrdy ``rouge`` would cut at ``.``), words are the space-separated pieces,
  the summary-level LCS union is a *set* of words (``exclusive=True``), and m / n are the numbers
  of *distinct* words in reference / hypothesis.  F = 2PR / (P + R + 1e-8).
  The sentence-cut rule of ``rouge_chinese`` was reconstructed from its documentation and memory,
  not re-verified against the package; for single-sentence strings (all our hand-computed tests)
  both libraries agree.
* An empty label or prediction scores 0 (as the original); a string that tokenizes to nothing
  (whitespace only) also scores 0 where the original library would raise.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["lcs_length", "mixed_tokenize", "rouge_l_f", "rouge_l_scores", "word_tokenize"]

_CONTRACTION = r"(?i:n't|'(?:s|re|ve|ll|d|m))(?!\w)"
_TOKEN_RE = re.compile(
    r"\d+(?:[.,]\d+)+"  # numbers with decimal point / thousands separators
    r"|" + _CONTRACTION + r"|\w+?(?=(?i:n't)(?!\w))"  # "do" of "don't"
    r"|\w+(?:-\w+)*"  # words (Unicode), hyphenated words
    r"|\.\.\.|--"  # ellipsis, dash
    r"|\S",  # any other single non-space character
    re.UNICODE,
)


def word_tokenize(text: str) -> list[str]:
    """Approximate ``nltk.word_tokenize`` (see the module docstring for the differences)."""
    return _TOKEN_RE.findall(text)


def mixed_tokenize(text: str) -> list[str]:
    """Tokens; any token holding a Unicode ``Lo`` character (CJK ...) is split into characters."""
    result: list[str] = []
    for token in word_tokenize(text):
        if any(unicodedata.category(ch) == "Lo" for ch in token):
            result.extend(token)
        else:
            result.append(token)
    return result


_SENT_CUTS = (
    (re.compile(r"([。！？?])([^”’])"), r"\1\n\2"),
    (re.compile(r"(\.{6})([^”’])"), r"\1\n\2"),
    (re.compile(r"(…{2})([^”’])"), r"\1\n\2"),
    (re.compile(r"([。！？?][”’])([^，。！？?])"), r"\1\n\2"),
)


def _cut_sentences(text: str) -> list[str]:
    for pattern, repl in _SENT_CUTS:
        text = pattern.sub(repl, text)
    pieces = text.rstrip().split("\n")
    return [" ".join(p.split()) for p in pieces if len(p) > 0]


def _lcs_table(x: list[str], y: list[str]) -> list[list[int]]:
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        row, prev = table[i], table[i - 1]
        xi = x[i - 1]
        for j in range(1, len(y) + 1):
            row[j] = prev[j - 1] + 1 if xi == y[j - 1] else max(prev[j], row[j - 1])
    return table


def lcs_length(x: list[str], y: list[str]) -> int:
    return _lcs_table(x, y)[len(x)][len(y)]


def _recon_lcs(x: list[str], y: list[str]) -> set[str]:
    """Words of one LCS (pltrdy tie-breaking), as a set; iterative (no recursion limit)."""
    table = _lcs_table(x, y)
    out: set[str] = set()
    i, j = len(x), len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            out.add(x[i - 1])
            i -= 1
            j -= 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out


def rouge_l_scores(hyp: str, ref: str) -> dict[str, float]:
    """Summary-level ROUGE-L of two space-tokenized strings: ``{"f", "p", "r"}``."""
    hyp_sents, ref_sents = _cut_sentences(hyp), _cut_sentences(ref)
    if not hyp_sents or not ref_sents:
        return {"f": 0.0, "p": 0.0, "r": 0.0}
    ref_words = [w for s in ref_sents for w in s.split(" ")]
    hyp_words = [w for s in hyp_sents for w in s.split(" ")]
    m, n = len(set(ref_words)), len(set(hyp_words))
    union: set[str] = set()
    for ref_s in ref_sents:
        for hyp_s in hyp_sents:
            union |= _recon_lcs(ref_s.split(" "), hyp_s.split(" "))
    llcs = len(union)
    r, p = llcs / m, llcs / n
    return {"f": 2.0 * (p * r) / (p + r + 1e-8), "p": p, "r": r}


def rouge_l_f(label: object, predict: object) -> float:
    """KAgentBench ``rouge_score(label, predict)``: ROUGE-L F1 on mixed CJK/English tokens."""
    label, predict = str(label), str(predict)
    if label == "" or predict == "":
        return 0.0
    hyp = " ".join(mixed_tokenize(predict))
    ref = " ".join(mixed_tokenize(label))
    if not hyp or not ref:
        return 0.0
    return rouge_l_scores(hyp, ref)["f"]
