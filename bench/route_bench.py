"""Routing accuracy and speed of kbsearch.peers.route against two baselines, in the same run.

Baselines: the majority group, and a TF-IDF nearest neighbour (the group of the most similar archive
phrasing; word 1-2-grams, cosine). For sets whose questions have no group, every method is
cross-validated over the archive's threads with the same folds.

    .venv/bin/python bench/route_bench.py ../shared/data/eval/clinc150 ../shared/data/eval/semeval2016-qatarliving
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from kbsearch.config import RouteConfig
from kbsearch.documents import Document, read_jsonl
from kbsearch.peers.route import Router


def _splits(set_dir: Path, folds: int = 5) -> list[tuple[list[Document], list[tuple[str, str]]]]:
    docs = list(read_jsonl(set_dir / "archive.jsonl"))
    questions = []
    with (set_dir / "questions.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            if item.get("group"):
                questions.append((item["question"], item["group"]))
    if questions:
        return [(docs, questions)]
    labelled = [d for d in docs if d.group]
    random.Random(13).shuffle(labelled)
    out = []
    for k in range(folds):
        test = labelled[k::folds]
        train = [d for i, d in enumerate(labelled) if i % folds != k]
        out.append((train, [(" ".join([d.title, *d.questions]), d.group or "") for d in test]))
    return out


def _examples(docs: list[Document]) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for d in docs:
        for t in (d.title, *d.questions):
            texts.append(t)
            labels.append(d.group or "")
    return texts, labels


def run(set_dir: Path) -> dict[str, dict[str, float]]:
    results: dict[str, list[float]] = {"kbsearch": [0, 0, 0.0], "nearest": [0, 0, 0.0], "majority": [0, 0, 0.0]}
    latencies: list[float] = []
    for train, test in _splits(set_dir):
        texts, labels = _examples(train)
        truth = [g for _, g in test]
        qs = [q for q, _ in test]
        started = time.perf_counter()
        router = Router.from_documents(train, None, RouteConfig())
        probs = router.scores(qs)
        pred = [router.classes[i] for i in probs.argmax(axis=1)]
        results["kbsearch"][2] += time.perf_counter() - started
        results["kbsearch"][0] += sum(p == t for p, t in zip(pred, truth))
        for q in qs[:300]:  # one question at a time, as `kb.route` is called (with the reason)
            t0 = time.perf_counter()
            router.route(q)
            latencies.append((time.perf_counter() - t0) * 1000)
        started = time.perf_counter()
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        x = vec.fit_transform(texts)
        sims = vec.transform(qs) @ x.T
        nearest = np.asarray(sims.argmax(axis=1)).ravel()
        results["nearest"][2] += time.perf_counter() - started
        results["nearest"][0] += sum(labels[i] == t for i, t in zip(nearest, truth))
        major = Counter(d.group for d in train).most_common(1)[0][0]
        results["majority"][0] += sum(t == major for t in truth)
        for r in results.values():
            r[1] += len(truth)
    out = {k: {"accuracy": round(v[0] / v[1], 4), "seconds": round(v[2], 2)} for k, v in results.items()}
    out["kbsearch"]["route_ms_p50"] = round(float(np.percentile(latencies, 50)), 2)
    out["kbsearch"]["route_ms_p95"] = round(float(np.percentile(latencies, 95)), 2)
    return out


def main(argv: list[str]) -> None:
    for arg in argv or ["../shared/data/eval/clinc150", "../shared/data/eval/semeval2016-qatarliving"]:
        res = run(Path(arg))
        k, n, m = res["kbsearch"], res["nearest"], res["majority"]
        print(f"{Path(arg).name}: kbsearch {k['accuracy']:.4f} ({k['seconds']:.1f}s fit+route) | "
              f"nearest-neighbour {n['accuracy']:.4f} ({n['seconds']:.1f}s) | majority {m['accuracy']:.4f} | "
              f"ratio vs nearest {k['accuracy'] / n['accuracy']:.3f}x, vs majority {k['accuracy'] / m['accuracy']:.2f}x | "
              f"one route() p50 {k['route_ms_p50']} ms, p95 {k['route_ms_p95']} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
