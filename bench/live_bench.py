"""New knowledge takes part at once: peer answers given after the rebuild, against the archive's.

    PYTHONPATH=. .venv/bin/python bench/live_bench.py

A fresh index is rebuilt from the shared StackFAQ threads t20-t99 (peer answers: title = question,
text = answer).  Then, with no rebuild, each of t0-t19 is escalated by its title (`kb.escalate`)
and answered with its thread's answer (`kb.answer`, as a peer would); the time from the answer to
the moment its title, asked again through `kb.ask`, is answered with it is measured.  Finally
every question of the set is decided (`deflect.decide_many`): the share of t0-t19's rephrasings
answered right against t20-t99's, their ratio (goal >= 0.9), and the precision of all answers
(out-of-scope questions answered count as wrong; goal >= 0.85).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _faq  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new", type=int, default=20, help="threads answered after the rebuild (the first N)")
    args = ap.parse_args()
    from kbsearch import Document
    from kbsearch.deflect import decide_many
    from kbsearch.peers.service import answer_doc_id
    from kbsearch.search import ALL_GROUPS

    threads = _faq.threads()
    new, old = threads[:args.new], threads[args.new:]
    qs = _faq.questions()
    with _faq.fresh_kb("kbsearch-live-") as kb:
        t0 = time.perf_counter()
        kb.rebuild(Document(id=t["id"], title=t["title"], questions=tuple(t.get("questions") or ()),
                            text=t["answer"], kind="answer", source="archive") for t in old)
        build = time.perf_counter() - t0
        doc_of: dict[str, str] = {t["id"]: t["id"] for t in old}
        latencies, answerable = [], 0
        for t in new:
            esc = kb.escalate(t["title"], user="asker", group="general", deliver=False)
            t0 = time.perf_counter()
            kb.answer(esc.id, t["answer"], by="peer")
            doc_of[t["id"]] = answer_doc_id(esc.id)
            d = kb.ask(t["title"], user="asker")
            latencies.append(time.perf_counter() - t0)
            answerable += str(d.action) == "answer" and bool(d.answers) and d.answers[0].id == doc_of[t["id"]]
        t0 = time.perf_counter()
        decisions = decide_many(kb, [q["question"] for q in qs], groups=ALL_GROUPS, route=False)
        decide = time.perf_counter() - t0
    new_ids = {t["id"] for t in new}
    groups = {"new (t0-t%d, answered after the rebuild)" % (args.new - 1): lambda q: q["answer_ids"][0] in new_ids,
              "archive (rebuilt)": lambda q: q["answer_ids"][0] not in new_ids}
    out: dict = {"build_s": round(build, 1), "decide_s": round(decide, 1),
                 "answer_to_answerable_s_max": round(max(latencies), 3),
                 "answer_to_answerable_s_median": round(sorted(latencies)[len(latencies) // 2], 3),
                 "titles_answered_at_once": f"{answerable}/{len(new)}"}
    rows = {}
    for name, belongs in groups.items():
        idx = [i for i, q in enumerate(qs) if q["answer_ids"] and belongs(q)]
        rows[name] = _faq.rates([decisions[i] for i in idx], [doc_of[qs[i]["answer_ids"][0]] for i in idx])
    relevant = [doc_of[q["answer_ids"][0]] if q["answer_ids"] else None for q in qs]
    rows["all questions (incl. out of scope)"] = _faq.rates(decisions, relevant)
    out["rates"] = rows
    print(json.dumps(out), flush=True)
    print("\n| questions | n | answered right | precision | answered | suggested | escalated | top-1 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['questions']} | {r['answered_right']:.3f} | {r['precision']:.3f} | {r['answered']:.3f} "
              f"| {r['suggested']:.3f} | {r['escalated']:.3f} | {r['top1']:.3f} |")
    a, b = (rows[k]["answered_right"] for k in list(groups))
    print(f"\nnew / archive answered right: {a / max(b, 1e-9):.3f} (goal >= 0.9); answer -> answerable: max "
          f"{out['answer_to_answerable_s_max']} s, titles answered at once {out['titles_answered_at_once']}")


if __name__ == "__main__":
    main()
