"""The shipped Shakespeare corpus: a fixed, disjoint split by work and the character tokenizer
(numpy only)."""

import hashlib

import numpy as np
import pytest

from aimoe_lib.analog import corpus


@pytest.fixture(scope="module")
def c():
    return corpus.load_corpus()


def test_the_corpus_holds_42_works_once_each():
    works = corpus.load_works()
    assert len(works) == 42
    digests = {hashlib.sha256(t.encode()).hexdigest() for t in works.values()}
    assert len(digests) == 42  # no work twice (e.g. a Folio and a modern edition)
    assert sum(len(t) for t in works.values()) == 5_057_198


def test_split_is_fixed_and_disjoint(c):
    assert c.works["validation"] == ("julius_caesar", "twelfth_night")
    assert c.works["test"] == ("macbeth", "much_ado_about_nothing")
    names = [set(c.works[s]) for s in ("train", "validation", "test")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert len(names[0]) + len(names[1]) + len(names[2]) == 42
    # works joined by a blank line: sizes are fixed
    assert (len(c.train), len(c.validation), len(c.test)) == (4_600_399, 231_094, 225_783)


def test_no_text_of_a_held_out_work_is_in_train():
    works = corpus.load_works()
    train = "\n\n".join(t for n, t in works.items() if corpus.split_of(n) == "train")
    for name in corpus.SPLIT["validation"] + corpus.SPLIT["test"]:
        # a long passage from the middle of the held-out work
        mid = len(works[name]) // 2
        assert works[name][mid:mid + 400] not in train


def test_tokenizer_round_trip(c):
    tok = c.tokenizer
    assert tok.vocab_size == 85 and len(tok.chars) == 84
    text = corpus.load_works()["hamlet"][:5000]
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("\x01")[0] == 0  # a character never seen in train -> the unknown id
    assert c.validation.max() < tok.vocab_size and c.train.min() >= 1


def test_arrays_are_read_only(c):
    with pytest.raises(ValueError):
        c.train[0] = 1


def test_windows(c):
    w = corpus.eval_windows(c.test, 8, 64)
    assert w.shape == (8, 65)
    np.testing.assert_array_equal(w, corpus.eval_windows(c.test, 8, 64))
    np.testing.assert_array_equal(w[1], c.test[len(c.test) // 8:len(c.test) // 8 + 65])
    a = corpus.sample_windows(c.train, 4, 16, np.random.default_rng(0))
    b = corpus.sample_windows(c.train, 4, 16, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="n_windows"):
        corpus.eval_windows(c.test, 10_000, 64)
    with pytest.raises(ValueError, match="split"):
        c.split("dev")
