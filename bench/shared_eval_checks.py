"""The quality bars the tests once checked on the full shared evaluation sets (``../shared/data/eval``).

The tests now run on small subsets kept in the repository (tests/data/eval); this script checks the
same bars on the whole sets, where they were set:

    .venv/bin/python bench/shared_eval_checks.py [../shared/data/eval]

- stackfaq (100 threads, 625 questions): P@1 > 0.67 (the lexical baseline), deflection precision
  >= 0.85, expected calibration error < 0.15;
- clinc150 (3,000 grouped questions, 10 domains): routing accuracy >= 0.95;
- semeval2016-qatarliving (613 threads, 3-fold cross-validation): routing accuracy above the
  majority group ("Qatar Living Lounge", 173/613) + 0.1.

Prints each figure; exits 1 if any bar is missed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kbsearch.config import RouteConfig
from kbsearch.evaluation.evaluate import evaluate
from kbsearch.peers.route import evaluate_routing

ROOT = Path(__file__).resolve().parents[1]


def main(shared: Path) -> int:
    failed: list[str] = []

    def check(name: str, value: float | None, ok: bool) -> None:
        print(f"{name}: {value}  {'ok' if ok else 'MISSED'}")
        if not ok:
            failed.append(name)

    report = evaluate(shared / "stackfaq")
    check("stackfaq questions == 625", report.questions, report.questions == 625)
    check("stackfaq P@1 > 0.67", report.p_at_1, report.p_at_1 is not None and report.p_at_1 > 0.67)
    check("stackfaq deflection precision >= 0.85", report.deflection_precision,
          report.deflection_precision is not None and report.deflection_precision >= 0.85)
    check("stackfaq ECE < 0.15", report.expected_calibration_error, report.expected_calibration_error < 0.15)
    clinc = evaluate_routing(shared / "clinc150", cfg=RouteConfig())
    check("clinc150 routing accuracy >= 0.95 (3,000 questions)", clinc.accuracy,
          clinc.questions == 3000 and clinc.accuracy is not None and clinc.accuracy >= 0.95)
    semeval = evaluate_routing(shared / "semeval2016-qatarliving", folds=3)
    check("semeval routing accuracy > 173/613 + 0.1 (3-fold)", semeval.accuracy,
          semeval.questions == 613 and semeval.accuracy is not None and semeval.accuracy > 173 / 613 + 0.1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "eval"))
