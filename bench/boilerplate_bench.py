#!/usr/bin/env python3
"""Site template removal on real documentation: sections before (template off) and after.

Serves ``/usr/share/doc`` on 127.0.0.1 (``apt-get install debian-handbook python3.11-doc``) and
crawls the Debian handbook (en-US) and the Python 3.11 docs twice each into fresh indexes: with
``template_share = 0`` (what the crawler did before: only per-page chrome rules) and with the
default settings.  For each run it prints:

* sections: documents indexed;
* nav-only: sections whose whole text recurs verbatim as a section on at least 10 % of the
  source's pages (and 3 pages): banner and navigation bars that became sections of their own;
* with nav: sections containing page navigation text ("Download the ebook", "Prev … Next",
  "Up Home");
* the crawl's seconds and its ``template_reparsed`` / ``template_blocks``.

    .venv/bin/python bench/boilerplate_bench.py
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import tempfile
import threading
from collections import defaultdict
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kbsearch import KnowledgeBase, Settings  # noqa: E402

DOC_ROOT = Path("/usr/share/doc")
SITES = {"handbook": "debian-handbook/html/en-US/index.html", "python": "python3.11/html/index.html"}
NAV_TEXT = re.compile(r"Download the ebook|\bPrev(ious)?\b.{0,300}\bNext\b|\bUp\s+Home\b", re.S)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(root: Path) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def count(kb: KnowledgeBase, source: str) -> dict[str, int]:
    """Sections, navigation-only sections and sections with navigation text of ``source``."""
    pages_of: dict[str, set[str]] = defaultdict(set)
    texts: list[str] = []
    pages: set[str] = set()
    for doc in kb.documents():
        if doc.source != source:
            continue
        page = doc.url.partition("#")[0]
        norm = " ".join(doc.text.split()).lower()
        pages_of[norm].add(page)
        pages.add(page)
        texts.append(doc.text)
    least = max(3, len(pages) // 10)
    nav_only = sum(len(p) for p in pages_of.values() if len(p) >= least)
    return {"pages": len(pages), "sections": len(texts), "nav_only": nav_only,
            "with_nav": sum(bool(NAV_TEXT.search(t)) for t in texts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DOC_ROOT)
    args = parser.parse_args()
    for path in SITES.values():
        if not (args.root / path).exists():
            raise SystemExit(f"{args.root / path} missing: apt-get install -y debian-handbook python3.11-doc")
    server, base = serve(args.root)
    settings = Settings.load(config_file=None, env={})
    rows = []
    try:
        for source, path in SITES.items():
            for label, share in (("before (template off)", 0.0), ("after", settings.crawl.template_share)):
                with tempfile.TemporaryDirectory() as tmp, KnowledgeBase.open(Path(tmp) / "idx", settings=settings) as kb:
                    report = kb.crawl([base + path], name=source, template_share=share)
                    assert report.failed == 0, report.errors[:3]
                    rows.append((source, label, count(kb, source), report))
    finally:
        server.shutdown()
    print(f"| site | run | pages | sections | nav-only sections | sections with nav text | crawl s | re-parsed | template blocks |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for source, label, c, rep in rows:
        print(f"| {source} | {label} | {c['pages']} | {c['sections']} | {c['nav_only']} | {c['with_nav']} | "
              f"{rep.seconds:.1f} | {rep.template_reparsed} | {rep.template_blocks} |")


if __name__ == "__main__":
    main()
