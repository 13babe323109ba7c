"""Versions on disk: writes never touch a published version, forks share files, clean-up keeps the
live and the newest complete version, readers in another process never fail during writes, and
refits are an explicit choice of the caller (no object-wide flag)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kbsearch import Document, KnowledgeBase
from kbsearch.storage import save_npy, write_json
from kbsearch.storage import versions


def _docs(n: int, word: str, start: int = 0) -> list[Document]:
    return [Document(id=f"{word}{i}", title=f"{word} document {i}", text=f"all about {word} number {i}")
            for i in range(start, start + n)]


def _snapshot(gen: Path) -> dict[str, tuple[int, str]]:
    """Every file of a version with its inode and content digest."""
    return {str(p.relative_to(gen)): (p.stat().st_ino, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(gen.rglob("*")) if p.is_file()}


def test_writes_never_change_a_published_version(example_kb: KnowledgeBase) -> None:
    kb = example_kb
    kb.settings.index.keep_generations = 10  # keep the earlier versions on disk to compare them
    first = kb.generation_path
    before = _snapshot(first)
    assert any(name.startswith("model/") for name in before)
    report = kb.add(_docs(80, "grow"))  # more than doubles the index: a refit with new models
    assert report.model_refitted and kb.generation_path != first
    second = kb.generation_path
    after_add = _snapshot(second)
    assert kb.delete(["grow0"]) == 1
    assert _snapshot(first) == before  # not one byte of the earlier versions changed
    assert _snapshot(second) == after_add
    assert kb.get("grow0") is None and kb.get("grow1") is not None


def test_fork_shares_unchanged_files_and_atomic_writes_replace_them(tmp_path: Path) -> None:
    live = versions.new_generation_dir(tmp_path)
    save_npy(live / "model" / "idf.npy", np.arange(4.0))
    write_json(live / "model" / "vocab.json", {"a": 0})
    versions.write_meta(live, {"format": 1})
    fork = versions.fork(tmp_path, live)
    assert not versions.is_complete(fork)  # the completion marker is written last, by the writer
    assert os.path.samefile(fork / "model" / "vocab.json", live / "model" / "vocab.json")
    save_npy(fork / "model" / "idf.npy", np.zeros(2))  # a new inode in the fork...
    assert np.load(live / "model" / "idf.npy").tolist() == [0.0, 1.0, 2.0, 3.0]  # ...the live one unchanged
    assert np.load(fork / "model" / "idf.npy").tolist() == [0.0, 0.0]
    assert not list(fork.rglob(".tmp-*"))


def test_clean_up_keeps_the_live_and_the_newest_complete_version(tmp_path: Path) -> None:
    made = []
    for _ in range(4):
        gen = versions.new_generation_dir(tmp_path)
        made.append(gen)
    old, live, newest, killed = made
    for n, gen in enumerate((old, live, newest), start=1):
        versions.write_meta(gen, {"format": 1})
        os.utime(gen / versions.META, ns=(n * 10**9, n * 10**9))  # completion order is meta.json's mtime
    versions.switch_to(tmp_path, live)
    removed = versions.remove_stale(tmp_path, keep=1)
    assert sorted(removed) == sorted([old.name, killed.name])
    assert live.is_dir() and newest.is_dir()


def test_adding_an_answer_keeps_the_loaded_deflection_model(example_kb: KnowledgeBase) -> None:
    kb = example_kb
    kb.ask_many(["How do I reset my password?"])
    model = kb._deflect_cache.value.model
    assert not kb.add([Document(id="ans-x", kind="answer", title="Where is the parking garage?",
                                text="Under building C.")]).model_refitted
    decision = kb.ask_many(["How do I reset my password?"])[0]
    assert kb._deflect_cache.value.model is model  # same files (hard links): not reloaded
    assert decision.generation == kb.generation_path.name


def test_a_refit_asked_for_by_one_thread_is_not_skipped_because_of_another(kb: KnowledgeBase) -> None:
    kb.add(_docs(5, "seed"))
    results: dict[str, Any] = {}

    class Source:
        """A source that syncs without refitting while another thread adds (a peer answer)."""

        name = "slow"

        def sync(self, kb: KnowledgeBase, *, full: bool = False, progress: Any = None) -> dict[str, Any]:
            kb.add(_docs(3, "slow"), refit=False)
            other = threading.Thread(target=lambda: results.update(other=kb.add(_docs(20, "answer"))))
            other.start()
            other.join()
            return {"source": self.name, "added": 3}

    report = kb.reindex([Source()])
    assert report.exit_code == 0
    assert results["other"].model_refitted  # the other thread's write got its refit
    assert not hasattr(kb, "_defer_refit")


READER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from kbsearch import KnowledgeBase
    root, stop = Path(sys.argv[1]), Path(sys.argv[2])
    done, errors, seen = 0, [], set()
    kb = KnowledgeBase.open(root, create=False)
    seen.add(kb.generation_path.name)  # the version before any write: the loop then sees later ones
    print("ready", flush=True)
    while not stop.exists() or done < 20:
        try:
            kb.search("apple document")
            kb.ask_many(["apple document number 3"])
            seen.add(kb.generation_path.name)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        done += 1
    print(json.dumps({"done": done, "errors": errors[:5], "versions": len(seen)}), flush=True)
""")


def test_a_reader_in_another_process_never_fails_during_writes(tmp_path: Path) -> None:
    root, stop = tmp_path / "kb", tmp_path / "stop"
    with KnowledgeBase.open(root) as kb:
        kb.add(_docs(30, "apple"))
        with subprocess.Popen([sys.executable, "-c", READER, str(root), str(stop)], stdout=subprocess.PIPE,
                              text=True) as reader:
            assert reader.stdout.readline().strip() == "ready"
            for i in range(6):
                kb.add(_docs(5, "apple", start=100 + 5 * i))
                kb.delete([f"apple{100 + 5 * i}"])
            kb.rebuild(kb.documents())
            stop.touch()
            out = json.loads(reader.stdout.readline())
            reader.wait(timeout=120)
    assert out["errors"] == [] and out["done"] >= 20 and out["versions"] >= 2


HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from kbsearch import KnowledgeBase
    kb = KnowledgeBase.open(Path(sys.argv[1]), create=False)
    print(kb.generation_path.name, flush=True)  # holds this version from now on
    sys.stdin.readline()  # until told to let go
    kb.close()
    print("closed", flush=True)
    sys.stdin.readline()
""")


def test_clean_up_leaves_a_version_another_process_reads_until_it_lets_go(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    with KnowledgeBase.open(root) as kb:
        kb.settings.index.keep_generations = 1
        kb.add(_docs(10, "apple"))
        with subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) as holder:
            held = root / holder.stdout.readline().strip()
            for i in range(3):  # each write's clean-up would remove every version but the live one
                kb.add(_docs(2, "pear", start=10 * i))
            kb.close()  # this process's own hold on the earlier versions
            kb.add(_docs(1, "plum"))
            assert held.is_dir() and held != kb.generation_path
            assert versions.is_complete(held) and (held / "deflect" / "model.json").is_file()
            others = {p.name for p in root.glob(versions.PREFIX + "*")} - {held.name, kb.generation_path.name}
            assert others == set()  # versions nobody holds were removed as usual
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "closed"
            kb.add(_docs(1, "fig"))  # the next clean-up removes it
            assert not held.exists()
            assert not (root / versions.READERS / f"{held.name}.lock").exists()
            holder.stdin.write("\n")
            holder.stdin.close()
            holder.wait(timeout=60)


def test_a_lease_on_a_removed_version_is_refused(tmp_path: Path) -> None:
    gen = versions.new_generation_dir(tmp_path)
    versions.write_meta(gen, {"format": 1})
    held = versions.lease(gen)
    newer = versions.new_generation_dir(tmp_path)
    versions.write_meta(newer, {"format": 1})
    versions.switch_to(tmp_path, newer)
    assert versions.remove_stale(tmp_path, keep=1) == [] and gen.is_dir()  # held: kept
    held.release()
    assert versions.remove_stale(tmp_path, keep=1) == [gen.name] and not gen.exists()
    with pytest.raises(versions.VersionGoneError):
        versions.lease(gen)
    assert versions.remove_stale(tmp_path, keep=1) == []
    assert list((tmp_path / versions.READERS).glob("*.lock")) == []  # the refused lease's file swept


def test_a_knowledge_base_collected_unclosed_closes_its_index_files(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine reads through open files (not memory maps): a knowledge base its owner forgot to close
    closes them when it is garbage-collected, instead of leaving them to warn as unclosed files."""
    import gc

    raised: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(f"{u.exc_type.__name__}: {u.object!r}"))
    kb = KnowledgeBase.open(tmp_path / "kb")
    kb.add(_docs(20, "pump"))
    assert kb.search("pump document") and kb.ask("pump document number 3") is not None
    lease = tmp_path / "kb" / versions.READERS / f"{kb.generation_path.name}.lock"
    kb._self = kb  # type: ignore[attr-defined]  # in a reference cycle, as fixtures and closures make
    del kb
    gc.collect()
    assert raised == []
    held = versions._claim(tmp_path / "kb", lease.name[:-len(".lock")])
    assert held is not None  # its lease was let go too
    os.close(held)


def test_a_read_only_index_opens_without_leases(tmp_path: Path) -> None:
    """A replica may read the index from a read-only mount: no lease file can be made there, and none is
    needed (no writer there to hold off); the version still opens and answers."""
    root = tmp_path / "kb"
    with KnowledgeBase.open(root) as kb:
        kb.add(_docs(5, "kiwi"))
    shutil.rmtree(root / versions.READERS)
    (root / versions.READERS).write_text("not a directory", encoding="utf-8")  # no lock file can be made
    with KnowledgeBase.open(root, create=False) as kb:
        assert kb.search("kiwi document")[0].id.startswith("kiwi")
