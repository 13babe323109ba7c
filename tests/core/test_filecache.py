"""The one cache of things loaded from files (live version, deflection model, routing model): kept
while the files are the very same files, loaded again when one is replaced."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from kbsearch.storage.filecache import MISSING, FileCache, file_stamp


def _replace(path: Path, text: str) -> None:
    """Write as kbsearch writes a version's file: a new file renamed over the old (a new inode)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def test_loaded_once_while_the_file_is_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    _replace(path, "one")
    loads: list[str | None] = []
    cache: FileCache[str] = FileCache()

    def load(old: str | None) -> str:
        loads.append(old)
        return path.read_text(encoding="utf-8")

    assert cache.value is None
    assert [cache.get(lambda: file_stamp(path), load) for _ in range(3)] == ["one"] * 3
    assert loads == [None]
    _replace(path, "two")
    assert cache.get(lambda: file_stamp(path), load) == "two"
    assert loads == [None, "one"]  # the loader sees what it replaces
    cache.clear()
    assert cache.value is None and cache.get(lambda: file_stamp(path), load) == "two" and loads[-1] is None


def test_a_hard_link_is_the_same_file_and_reuse_rebinds(tmp_path: Path) -> None:
    """A forked version links its parent's unchanged files: what was loaded carries over."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _replace(tmp_path / "a" / "m", "model")
    os.link(tmp_path / "a" / "m", tmp_path / "b" / "m")
    assert file_stamp(tmp_path / "a" / "m") == file_stamp(tmp_path / "b" / "m")
    cache: FileCache[tuple[str, str]] = FileCache()
    loads = []

    def get(version: str) -> tuple[str, str]:
        def load(_old: tuple[str, str] | None) -> tuple[str, str]:
            loads.append(version)
            return (version, (tmp_path / version / "m").read_text(encoding="utf-8"))

        return cache.get(lambda: file_stamp(tmp_path / version / "m"), load,
                         lambda v: v if v[0] == version else (version, v[1]))

    assert get("a") == ("a", "model") and get("b") == ("b", "model")
    assert loads == ["a"] and cache.value == ("b", "model")


def test_missing_files_and_concurrent_callers(tmp_path: Path) -> None:
    assert file_stamp(tmp_path / "nothing", tmp_path)[0] == MISSING and file_stamp(tmp_path)[0] != MISSING
    path = tmp_path / "f"
    _replace(path, "x")
    cache: FileCache[int] = FileCache()
    calls = []
    started = threading.Barrier(8)

    def load(_old: int | None) -> int:
        calls.append(1)
        return len(calls)

    def worker(out: list[int]) -> None:
        started.wait()
        out.append(cache.get(lambda: file_stamp(path), load))

    results: list[int] = []
    threads = [threading.Thread(target=worker, args=(results,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1] * 8 and len(calls) == 1
