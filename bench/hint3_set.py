"""Turn one HINT3 bot (Arora et al. 2020, github.com/hellohaptik/HINT3, ODbL) into an eval set.

    .venv/bin/python bench/hint3_set.py TRAIN.csv TEST.csv OUT_DIR
    .venv/bin/python bench/deflect_bench.py eval OUT_DIR

HINT3's CSVs have the columns ``sentence,label``.  The archive gets one thread per intent (id = the
label, title = the label in words, questions = its training sentences, no answer text), like the
shared CLINC150 set; every test sentence becomes a question whose answer is its intent, or nothing
(must escalate) for HINT3's out-of-scope label ``NO_NODES_DETECTED``.  The data is not committed:
fetch the CSVs from the HINT3 repository (``dataset/v2/test``, ``dataset/v2/train`` or ``dataset/train``).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

OUT_OF_SCOPE = "NO_NODES_DETECTED"


def read(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [(row["sentence"].strip(), row["label"].strip()) for row in csv.DictReader(f) if row["sentence"].strip()]


def convert(train: Path, test: Path, out: Path) -> dict[str, int]:
    phrasings: dict[str, list[str]] = defaultdict(list)
    for sentence, label in read(train):
        if label != OUT_OF_SCOPE:
            phrasings[label].append(sentence)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "archive.jsonl").open("w", encoding="utf-8") as f:
        for label, sentences in sorted(phrasings.items()):
            title = label.replace("_", " ").lower()
            f.write(json.dumps({"id": label, "title": title, "questions": sentences, "answer": "",
                                "group": None}, ensure_ascii=False) + "\n")
    questions = read(test)
    unknown = sorted({label for _s, label in questions if label != OUT_OF_SCOPE and label not in phrasings})
    if unknown:
        raise SystemExit(f"test labels with no training sentences: {unknown}")
    with (out / "questions.jsonl").open("w", encoding="utf-8") as f:
        for i, (sentence, label) in enumerate(questions):
            answer_ids = [] if label == OUT_OF_SCOPE else [label]
            f.write(json.dumps({"id": f"{test.stem}-{i}", "question": sentence, "answer_ids": answer_ids,
                                "group": None}, ensure_ascii=False) + "\n")
    return {"threads": len(phrasings), "phrasings": sum(map(len, phrasings.values())), "questions": len(questions),
            "unanswerable": sum(1 for _s, label in questions if label == OUT_OF_SCOPE)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("train", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    print(json.dumps(convert(args.train, args.test, args.out)))


if __name__ == "__main__":
    main()
