"""Real-text benchmark corpus: Debian documentation sections plus the shared evaluation archives.

Builds up to ~110k documents from the HTML manuals Debian ships (Python, PostgreSQL, Django, Debian
handbook, Apache, SQLite, Debian FAQ), split at headings and then at paragraph groups, and adds the
answer threads of ``../shared/data/eval/*/archive.jsonl``.  Questions with known answers come from
the eval sets (real user phrasings) and from the FAQ pages' question headings.  The corpus is cached
as JSONL under ``bench/data/`` (git-ignored).

    apt-get install python3.11-doc postgresql-doc-15 python-django-doc debian-handbook \
        apache2-doc sqlite3-doc debian-faq
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import lxml.html

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
EVAL = ROOT.parent / "shared" / "data" / "eval"

DOC_TREES = {
    "python": "/usr/share/doc/python3.11/html",
    "postgresql": "/usr/share/doc/postgresql-doc-15/html",
    "django": "/usr/share/doc/python-django-doc/html",
    "handbook": "/usr/share/doc/debian-handbook/html",
    "apache": "/usr/share/doc/apache2-doc/manual",
    "sqlite": "/usr/share/doc/sqlite3-doc",
    "debianfaq": "/usr/share/doc/debian-faq",
}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
BLOCKS = {"p", "pre", "li", "dd", "dt", "td", "blockquote"}
CHUNK_CHARS = 500
WS = re.compile(r"\s+")


def _text(el) -> str:
    return WS.sub(" ", el.text_content()).replace("\u00b6", "").strip()


def _anchor(el) -> str:
    for node in (el, el.getparent()):
        if node is not None and node.get("id"):
            return node.get("id")
    a = el.find(".//a[@id]") if el is not None else None
    if a is not None:
        return a.get("id")
    a = el.find(".//a[@name]")
    return a.get("name") if a is not None else ""


def page_sections(path: Path, site: str, base: Path) -> Iterator[dict]:
    """Sections of one HTML page: (heading, anchor, text chunks)."""
    try:
        tree = lxml.html.parse(str(path))
    except (OSError, ValueError):
        return
    root = tree.getroot()
    if root is None:
        return
    for bad in root.xpath("//script|//style|//nav|//footer|//header"):
        bad.drop_tree()
    title_el = root.find(".//title")
    page_title = WS.sub(" ", title_el.text_content()).strip() if title_el is not None else path.stem
    rel = path.relative_to(base).as_posix()
    heading, anchor, chunk, n, first = page_title, "", [], 0, True

    def flush():
        nonlocal chunk, n, first
        text = " ".join(chunk).strip()
        chunk = []
        if len(text) < 40:
            return None
        n += 1
        was_first, first = first, False
        return {
            "first": was_first,
            "id": f"{site}:{rel}#{anchor}:{n}",
            "kind": "page",
            "title": heading,
            "headings": [page_title, heading] if heading != page_title else [page_title],
            "text": text,
            "url": f"http://docs.example/{site}/{rel}" + (f"#{anchor}" if anchor else ""),
            "source": site,
        }

    body = root.find(".//body")
    if body is None:
        return
    for el in body.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in HEADINGS:
            doc = flush()
            if doc:
                yield doc
            heading = _text(el) or heading
            anchor = _anchor(el) or anchor
            first = True
        elif tag in BLOCKS:
            if any(isinstance(a.tag, str) and a.tag in BLOCKS for a in el.iterancestors()):
                continue
            t = _text(el)
            if t:
                chunk.append(t)
                if sum(len(c) for c in chunk) >= CHUNK_CHARS:
                    doc = flush()
                    if doc:
                        yield doc
    doc = flush()
    if doc:
        yield doc


def doc_sections(limit: int) -> Iterator[dict]:
    count = 0
    for site, base in DOC_TREES.items():
        base_path = Path(base)
        if not base_path.is_dir():
            print(f"corpus: {base} missing (apt-get install the doc package)", file=sys.stderr)
            continue
        for dirpath, _dirs, files in sorted(os.walk(base_path)):
            for name in sorted(files):
                if not name.endswith((".html", ".htm")) or ".html." in name:
                    continue
                for doc in page_sections(Path(dirpath) / name, site, base_path):
                    yield doc
                    count += 1
                    if count >= limit:
                        return


def eval_archive_docs() -> Iterator[dict]:
    for set_dir in sorted(EVAL.glob("*/")):
        for line in (set_dir / "archive.jsonl").open(encoding="utf-8"):
            d = json.loads(line)
            yield {"id": f"{set_dir.name}:{d['id']}", "kind": "answer", "title": d["title"],
                   "questions": d["questions"], "text": d.get("answer") or "", "group": d.get("group"),
                   "source": set_dir.name}


def eval_questions(per_set: int = 300) -> list[dict]:
    """Answerable real questions of every eval set: {"q", "relevant": [ids]}."""
    out = []
    for set_dir in sorted(EVAL.glob("*/")):
        taken = 0
        for line in (set_dir / "questions.jsonl").open(encoding="utf-8"):
            d = json.loads(line)
            if not d["answer_ids"]:
                continue
            out.append({"q": d["question"], "relevant": [f"{set_dir.name}:{a}" for a in d["answer_ids"]],
                        "set": set_dir.name})
            taken += 1
            if taken >= per_set:
                break
    return out


def build(size: int) -> Path:
    """Write (or reuse) ``bench/data/corpus-{size}.jsonl`` and its questions file."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"corpus-{size}.jsonl"
    qpath = DATA / f"questions-{size}.jsonl"
    if path.exists() and qpath.exists():
        return path
    archive = list(eval_archive_docs())
    faq_questions = []
    with path.open("w", encoding="utf-8") as out:
        for d in archive:
            out.write(json.dumps(d) + "\n")
        for d in doc_sections(size - len(archive)):
            first = d.pop("first")
            out.write(json.dumps(d) + "\n")
            d["first"] = first
            if "/faq/" in d["url"] or d["source"] == "debianfaq":
                if d["title"].rstrip().endswith("?") and d["first"]:
                    faq_questions.append({"q": d["title"], "relevant": [d["id"]], "set": "faq-headings"})
    questions = eval_questions() + faq_questions
    with qpath.open("w", encoding="utf-8") as out:
        for q in questions:
            out.write(json.dumps(q) + "\n")
    return path


def iter_docs(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def questions_for(path: Path) -> list[dict]:
    qpath = path.with_name(path.name.replace("corpus-", "questions-"))
    return [json.loads(line) for line in qpath.open(encoding="utf-8")]


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    p = build(size)
    n = sum(1 for _ in p.open())
    print(f"{p}: {n} documents, {len(questions_for(p))} questions")
