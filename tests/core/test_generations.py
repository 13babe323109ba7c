"""Rebuilds switch atomically; a killed or failed rebuild leaves the previous index serving;
one writer at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kbsearch import Document, IndexLockedError, KbsearchError, KnowledgeBase, Settings
from kbsearch.search import _generations as gens


def _docs(n: int, word: str) -> list[Document]:
    return [Document(id=f"{word}{i}", title=f"{word} document {i}", text=f"all about {word} number {i}") for i in range(n)]


def test_rebuild_replaces_content_atomically(kb: KnowledgeBase) -> None:
    kb.add(_docs(5, "apple"))
    old = kb.generation_path
    report = kb.rebuild(_docs(7, "banana"))
    assert report.documents == 7 and report.model_fitted_on == 7
    assert kb.generation_path != old and kb.generation_path.name == report.generation
    assert kb.search("apple") == [] and len(kb.search("banana", limit=20)) == 7


def test_failed_rebuild_keeps_previous_generation(kb: KnowledgeBase) -> None:
    kb.add(_docs(3, "apple"))
    live = kb.generation_path
    before = {p.name for p in kb.root.glob("gen-*")}

    def broken():
        yield from _docs(3, "banana")
        raise KbsearchError("source went away")

    with pytest.raises(KbsearchError, match="source went away"):
        kb.rebuild(broken())
    assert kb.generation_path == live
    assert kb.search("apple")[0].id.startswith("apple")
    assert {p.name for p in kb.root.glob("gen-*")} == before  # the failed rebuild left nothing behind


KILLED_REBUILD = textwrap.dedent("""
    import sys, time
    from kbsearch import Document, KnowledgeBase
    kb = KnowledgeBase.open(sys.argv[1])
    def slow():
        for i in range(100000):
            if i == 50:
                print("halfway", flush=True)
            if i >= 50:
                time.sleep(0.01)
            yield Document(id=f"banana{i}", title=f"banana {i}", text="banana text")
    kb.rebuild(slow())
""")


def test_killed_rebuild_leaves_previous_index_answering(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    with KnowledgeBase.open(root) as kb:
        kb.add(_docs(4, "apple"))
        live = kb.generation_path
    before = {p.name for p in root.glob("gen-*")}
    with subprocess.Popen([sys.executable, "-c", KILLED_REBUILD, str(root)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "halfway"
        with KnowledgeBase.open(root, create=False) as reader:  # readers work during the rebuild
            assert reader.search("apple")[0].id.startswith("apple")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with KnowledgeBase.open(root, create=False) as kb:
        assert kb.generation_path == live
        assert kb.search("apple")[0].id.startswith("apple") and kb.search("banana") == []
        half_built = {p.name for p in root.glob("gen-*")} - before
        assert len(half_built) == 1  # the half-built generation is still on disk...
        kb.rebuild(_docs(2, "cherry"))  # ...until the next writer cleans it up
        assert kb.search("cherry")
        assert {p.name for p in root.glob("gen-*")} == {live.name, kb.generation_path.name}  # keep_generations=2


def test_second_writer_fails_fast_or_waits(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    KnowledgeBase.open(root).close()
    held = threading.Event()
    release = threading.Event()

    def hold():
        with gens.writer_lock(root, 0):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        with KnowledgeBase.open(root) as kb, pytest.raises(IndexLockedError, match="another writer"):
            kb.add(_docs(1, "apple"))
        settings = Settings.load(config_file=None, env={})
        settings.index.writer_timeout = 5.0
        with KnowledgeBase.open(root, settings=settings) as waiting:
            threading.Timer(0.3, release.set).start()
            started = time.monotonic()
            assert waiting.add(_docs(1, "apple")).added == 1
            assert time.monotonic() - started >= 0.25
    finally:
        release.set()
        t.join()


@pytest.mark.parametrize("write", ["add", "delete", "rebuild"])
def test_each_write_waits_as_long_as_its_lock_timeout(tmp_path: Path, write: str) -> None:
    """``lock_timeout`` is how crawls, reindexes and the peer service wait for another writer: the
    writer lock waits, nobody retries around it."""
    root = tmp_path / "kb"
    with KnowledgeBase.open(root) as kb:
        kb.add(_docs(2, "apple"))
        ops = {"add": lambda t: kb.add(_docs(1, "pear"), lock_timeout=t),
               "delete": lambda t: kb.delete(["apple0"], lock_timeout=t),
               "rebuild": lambda t: kb.rebuild(_docs(1, "pear"), lock_timeout=t)}
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with gens.writer_lock(root, 0):
                held.set()
                release.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        held.wait(5)
        try:
            with pytest.raises(IndexLockedError, match=r"waited 0\.1s"):
                ops[write](0.1)
            assert len(kb.search("pear")) == 0 and len(kb.search("apple")) == 2
            threading.Timer(0.3, release.set).start()
            started = time.monotonic()
            ops[write](10.0)
            assert time.monotonic() - started >= 0.25
        finally:
            release.set()
            t.join()
        assert len(kb.search("apple")) == {"add": 2, "delete": 1, "rebuild": 0}[write]
        assert len(kb.search("pear")) == (0 if write == "delete" else 1)


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from kbsearch import Document, KnowledgeBase
    root, op, word = sys.argv[1:]
    docs = [Document(id=f"{word}{i}", title=f"{word} document {i}", text=f"all about {word} number {i}")
            for i in range(2)]
    with KnowledgeBase.open(Path(root)) as kb:
        getattr(kb, op)(docs)
""")


def _write_in_another_process(root: Path, op: str, word: str) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", _WRITER, str(root), op, word], capture_output=True, text=True,
                          env=env, cwd=repo, timeout=120)
    assert done.returncode == 0, done.stderr


def test_readers_follow_a_switch_by_another_process(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    with KnowledgeBase.open(root) as reader:
        assert not reader.search("apple")
        _write_in_another_process(root, "add", "apple")  # added to the live generation
        assert {h.id for h in reader.search("apple")} == {"apple0", "apple1"}
        seen = reader.generation_path
        _write_in_another_process(root, "rebuild", "banana")
        assert reader.search("banana") and not reader.search("apple")
        assert reader.generation_path != seen and reader.generation_path == gens.current_generation(root)


def test_searches_during_rebuilds_all_succeed(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    with KnowledgeBase.open(root) as kb:
        kb.add(_docs(50, "apple"))
    errors: list[BaseException] = []
    answered = []
    stop = threading.Event()

    def ask():
        with KnowledgeBase.open(root, create=False) as reader:
            while not stop.is_set():
                try:
                    answered.append(len(reader.search("apple document")))
                except BaseException as exc:  # any failure fails the test
                    errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    with KnowledgeBase.open(root) as kb:
        for _ in range(3):
            kb.rebuild(_docs(50, "apple"))
    stop.set()
    for t in threads:
        t.join()
    assert not errors and answered and min(answered) == 10


def test_corrupt_pointer_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    KnowledgeBase.open(root).close()
    (root / gens.CURRENT).write_text("../../etc\n", encoding="utf-8")
    with pytest.raises(KbsearchError, match="does not name a generation"):
        KnowledgeBase.open(root)
    assert os.path.isdir(root)
