"""Peak memory of a whole rebuild (indexing, vectors, TF-IDF fit, routing, deflection calibration),
the process and its workers together, sampled from outside.

    PYTHONPATH=. .venv/bin/python bench/rebuild_memory.py --size 100000
    PYTHONPATH=. .venv/bin/python bench/rebuild_memory.py --size 100000 --baseline REV   # side by side

Each run is a child process doing `KnowledgeBase.rebuild` of the bench corpus (`bench/corpus.py`,
page sections of Debian's manuals) into a fresh index.  A sampler polls every 0.25 s the resident
set size of the child and of every process it started (the answer model is fitted in a worker while
calibration runs) and keeps the peak of the child alone and of the sum.  Each revision runs from a
temporary git worktree (the committed HEAD, not uncommitted edits); ``--baseline REV`` runs the
same rebuild with kbsearch as it was at revision REV first, in the same invocation, and prints the
ratios.  Sampling can miss a peak shorter than 0.25 s; the child's own
``VmHWM`` (the kernel's exact high-water mark) is printed beside it.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402
from _rss import PeakRss  # noqa: E402

CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from kbsearch import KnowledgeBase
from kbsearch.documents import read_jsonl


def main():
    t0 = time.perf_counter()
    with KnowledgeBase.open(Path(sys.argv[1])) as kb:
        report = kb.rebuild(read_jsonl(sys.argv[2]))
    status = open("/proc/self/status").read()
    hwm = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps({"seconds": time.perf_counter() - t0, "documents": report.documents, "vmhwm_mb": hwm}))


if __name__ == "__main__":  # the worker processes import this module too
    main()
"""


def measure(code: Path, corpus_path: Path) -> dict[str, float]:
    """One rebuild with kbsearch from ``code``: seconds, peak RSS of the process and of its tree."""
    with tempfile.TemporaryDirectory(prefix="kbsearch-rebuild-mem-") as tmp:
        script = Path(tmp) / "child.py"
        script.write_text(CHILD, encoding="utf-8")
        proc = subprocess.Popen([sys.executable, str(script), str(Path(tmp) / "kb"), str(corpus_path), str(code)],
                                stdout=subprocess.PIPE, text=True, cwd=tmp)
        sampler = PeakRss(proc.pid).start()
        out, _ = proc.communicate()
        peak = sampler.stop()
        if proc.returncode:
            raise SystemExit(f"rebuild with {code} failed (exit {proc.returncode})")
        result = json.loads(out.strip().splitlines()[-1])
    return {**result, "peak_self_mb": peak["self"] / 2**20, "peak_tree_mb": peak["tree"] / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--baseline", help="git revision to measure first, side by side")
    args = ap.parse_args()
    corpus_path = corpus.build(args.size)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    runs: dict[str, dict[str, float]] = {}
    # Each revision from a worktree of its own: the run takes minutes, and its worker processes
    # import kbsearch when they start (the committed code is measured, not the files being edited).
    for rev in ([args.baseline] if args.baseline else []) + [head]:
        with tempfile.TemporaryDirectory(prefix="kbsearch-rev-") as tmp:
            tree = Path(tmp) / "kb"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev], check=True)
            try:
                runs[rev] = measure(tree, corpus_path)
                print(rev, json.dumps(runs[rev]), flush=True)
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    rows = [("seconds", "seconds"), ("peak RSS MB, rebuilding process", "peak_self_mb"),
            ("its VmHWM MB", "vmhwm_mb"), ("peak RSS MB, process + workers", "peak_tree_mb")]
    names = list(runs)
    print(f"\n{args.size} documents, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| | " + " | ".join(names) + (" | ratio |" if len(names) == 2 else " |"))
    print("| --- " * (len(names) + 1 + (len(names) == 2)) + "|")
    for label, key in rows:
        values = [runs[n][key] for n in names]
        ratio = f" | {values[1] / values[0]:.2f}" if len(values) == 2 and values[0] else ""
        print(f"| {label} | " + " | ".join(f"{v:,.0f}" for v in values) + ratio + " |")


if __name__ == "__main__":
    main()
