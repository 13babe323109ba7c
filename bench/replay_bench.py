"""Plain `kbsearch eval` and `kbsearch eval --replay` side by side on the same questions.

For each set: the plain eval (built and calibrated from the archive alone, no feedback) is scored on
the replay's second half (the same questions the replay scores, by SHA-1 of their id), beside the
replay's figures after learning from the first half's outcomes.  Prints one table row per set and
the ratios the issue's "done when" asks for (replay / plain answered right; accuracy difference).

    PYTHONPATH=. python bench/replay_bench.py /work/shared/data/eval/{clinc150,stackfaq,semeval2016-qatarliving}

``--baseline CHECKOUT`` also runs that checkout's plain ``kbsearch eval`` (its own code, in a child
process) on each set, so a second table shows whether any plain figure dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kbsearch.evaluation.evaluate import evaluate, load_questions, score
from kbsearch.evaluation.replay import replay, replay_order


def _decisions(path: Path) -> dict[str, Any]:
    """Decision lines as the minimal objects `evaluate.score` reads."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        action = "answer" if item["deflect"] else item.get("action", "escalate")
        answers = [SimpleNamespace(id=item["answer_id"])] if item["answer_id"] else []
        out[item["id"]] = SimpleNamespace(action=SimpleNamespace(value=action), answers=answers,
                                          ranked=item["ranked"], confidence=item["confidence"], group=None,
                                          nearest_group=None)
    return out


def answered_right(report: Any) -> float:
    """Share of questions answered (deflected) with the right answer."""
    return round((report.deflection_precision or 0.0) * report.deflection_rate, 4)


def run(set_dir: Path) -> dict[str, Any]:
    questions = replay_order(load_questions(set_dir / "questions.jsonl"))
    second = questions[len(questions) // 2:]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        plain_all = evaluate(set_dir, decisions_file=Path(tmp) / "plain.jsonl")
        plain_s = time.perf_counter() - t0
        plain_dec = _decisions(Path(tmp) / "plain.jsonl")
        t0 = time.perf_counter()
        rep = replay(set_dir)
        replay_s = time.perf_counter() - t0
    plain = score(second, [plain_dec[q.id] for q in second])
    return {"set": set_dir.name, "plain_all": plain_all.to_dict(), "plain_seconds": round(plain_s, 1),
            "plain": plain.to_dict(), "replay": rep.to_dict(), "replay_seconds": round(replay_s, 1),
            "outcomes": rep.replay.get("outcomes"), "plain_right": answered_right(plain),
            "replay_right": answered_right(rep)}


PLAIN_KEYS = ("accuracy", "in_scope_accuracy", "oos_recall", "deflection_precision", "p_at_1", "mcc")


def baseline(checkout: Path, set_dir: Path) -> dict[str, Any]:
    """Plain ``kbsearch eval --json --details`` of ``checkout``'s own code on ``set_dir``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, str(checkout / "cli.py"), "eval", str(set_dir), "--json", "--details"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sets", nargs="+", type=Path)
    ap.add_argument("--json", action="store_true", help="one JSON object per set")
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout whose plain eval to compare with")
    args = ap.parse_args()
    plain_rows = []
    print("| set | plain: acc / prec / answered right (2nd half) | replay: acc / prec / answered right "
          "| right ratio | acc diff | first-half outcomes | seconds (plain / replay) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for set_dir in args.sets:
        r = run(set_dir)
        if args.json:
            print(json.dumps(r), file=sys.stderr)
        p, q = r["plain"], r["replay"]

        def fmt(m: dict[str, Any], right: float) -> str:
            prec = "n/a" if m["deflection_precision"] is None else f"{m['deflection_precision']:.3f}"
            return f"{m['accuracy']:.3f} / {prec} / {right:.3f}"
        ratio = "n/a" if not r["plain_right"] else f"{r['replay_right'] / r['plain_right']:.2f}"
        print(f"| {r['set']} | {fmt(p, r['plain_right'])} | {fmt(q, r['replay_right'])} | {ratio} "
              f"| {q['accuracy'] - p['accuracy']:+.3f} | {r['outcomes']} | {r['plain_seconds']} / {r['replay_seconds']} |",
              flush=True)
        if args.baseline is not None:
            base = baseline(args.baseline, set_dir)
            if args.json:
                print(json.dumps({"set": r["set"], "baseline": base}), file=sys.stderr)
            cells = " | ".join("n/a" if base[k] is None or r["plain_all"][k] is None else
                               f"{base[k]:.3f} → {r['plain_all'][k]:.3f}" for k in PLAIN_KEYS)
            plain_rows.append(f"| {r['set']} | {cells} | {base['seconds']:.1f} → {r['plain_seconds']} |")
    if plain_rows:
        print("\nplain eval, whole set: baseline → this checkout")
        print("| set | " + " | ".join(PLAIN_KEYS) + " | seconds |")
        print("| --- |" + " --- |" * (len(PLAIN_KEYS) + 1))
        print("\n".join(plain_rows))


if __name__ == "__main__":
    main()
