"""``kbsearch reindex``: real sources (a web site on 127.0.0.1), real subprocesses, SIGKILL, overlap."""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from kbsearch import Document, KnowledgeBase
from kbsearch.search._generations import current_generation

PAGES = {
    "index.html": "<html><head><title>IT help</title></head><body><main><h1>IT help</h1>"
                  "<p>See <a href='wifi.html'>guest wifi</a> and <a href='toner.html'>toner</a>.</p></main></body></html>",
    "wifi.html": "<html><head><title>Guest wifi access</title></head><body><main><h1>Guest wifi access</h1>"
                 "<p>Visitors connect to the guest wifi network with the daily voucher code from reception.</p>"
                 "</main></body></html>",
    "toner.html": "<html><head><title>Replacing printer toner</title></head><body><main><h1>Replacing printer toner</h1>"
                  "<p>Spare toner cartridges are in the supply cupboard next to the kitchen.</p></main></body></html>",
}


class Site:
    """A small intranet site served by the standard library on 127.0.0.1, stoppable mid-test."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for name, html in PAGES.items():
            (root / name).write_text(html, encoding="utf-8")
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def site(tmp_path):
    s = Site(tmp_path / "site")
    yield s
    s.stop()


def write_sources(directory: Path, site_url: str, dead_url: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "site.toml").write_text(f'type = "web"\nstart_urls = ["{site_url}"]\nretries = 0\n', encoding="utf-8")
    if dead_url:
        (directory / "broken.toml").write_text(
            f'type = "web"\nstart_urls = ["{dead_url}"]\nretries = 0\nconnect_timeout = 1.0\n', encoding="utf-8")
    return directory


def dead_url(h) -> str:
    return f"http://127.0.0.1:{h.free_port()}/"


def run_reindex(h, index: Path, sources: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([h.KBSEARCH, "reindex", "--index", str(index), "--sources", str(sources), *args],
                          capture_output=True, text=True, timeout=timeout, env=_env())


def start_reindex(h, index: Path, sources: Path, *args: str,
                  hooks: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([h.KBSEARCH, "reindex", "--index", str(index), "--sources", str(sources), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(hooks))


#: A ``sitecustomize`` that lets a test hold a reindex subprocess at a known point (see its docstring).
HOOKS = Path(__file__).with_name("_hold")


def _env(hooks: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KBSEARCH_CONFIG", None)
    if hooks:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOKS), env.get("PYTHONPATH")) if p)
        env.update(hooks)
    return env


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen, what: str,
               between: Callable[[], None] = lambda: time.sleep(0.02), timeout: float = 120) -> None:
    """Wait until ``condition()`` holds (calling ``between`` meanwhile); fail at once if ``proc`` ends."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"reindex ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        between()


class Hold:
    """Holds a reindex subprocess just before it makes its new generation the live one (``at`` =
    "switch_to") or before it marks it complete ("write_meta": the index written, not yet fitted)."""

    def __init__(self, folder: Path, at: str = "switch_to") -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.hooks = {"KBT_HOLD": str(folder), "KBT_HOLD_AT": at}

    def wait(self, proc: subprocess.Popen, between: Callable[[], None] = lambda: time.sleep(0.02)) -> Path:
        """Wait until ``proc`` is held; the new generation (not live)."""
        wait_until((self.folder / "held").exists, proc, "it was held before the switch", between)
        return Path((self.folder / "held").read_text(encoding="utf-8"))

    def release(self) -> None:
        (self.folder / "release").touch()


def ids(index: Path) -> set[str]:
    with KnowledgeBase.open(index, create=False) as kb:
        return set(kb.ids())


def test_reindex_syncs_every_source_and_reports_a_failed_one(tmp_path, site, h):
    index = h.build_index(tmp_path / "idx")
    before = current_generation(index)
    sources = write_sources(tmp_path / "crawlers", site.url, dead_url(h))
    done = run_reindex(h, index, sources)
    assert done.returncode == 2, done.stderr  # partial: one source failed, index still rebuilt
    line = done.stdout.strip()
    assert line.startswith("reindex partial: 2 sources (1 ok, failed: broken)"), line
    assert "\r" not in done.stderr and "syncing source site" in done.stderr  # plain log lines off a terminal
    assert current_generation(index) != before
    got = ids(index)
    assert {d.id for d in h.DOCS} <= got  # what was there stays
    with KnowledgeBase.open(index, create=False) as kb:
        hit = kb.search("guest wifi voucher code")[0]
    assert hit.url.startswith(site.url + "wifi.html")

    only = run_reindex(h, index, sources, "--source", "site", "--json")
    assert only.returncode == 0, only.stderr
    assert '"status": "ok"' in only.stdout and '"broken"' not in only.stdout

    # The intranet server is down tonight: the site's pages stay in the index, the run says so.
    crawled = ids(index) - {d.id for d in h.DOCS}
    assert len(crawled) >= 3
    site.stop()
    down = run_reindex(h, index, sources, "--source", "site")
    assert down.returncode == 2, down.stdout + down.stderr
    assert "failed: site" in down.stdout
    assert crawled <= ids(index)


def test_unknown_source_is_a_clear_error(tmp_path, h):
    from kbsearch import ConfigError

    sources = write_sources(tmp_path / "crawlers", "http://127.0.0.1:9/")
    with KnowledgeBase.open(tmp_path / "idx") as kb, pytest.raises(ConfigError, match="unknown source 'nope'.*known: site"):
        kb.reindex(sources, only=["nope"])


def test_sigkill_mid_rebuild_keeps_the_previous_index_and_next_run_completes(tmp_path, site, h):
    index = tmp_path / "idx"
    bulk = [Document(id=f"bulk-{i}", title=f"Procedure {i} for the warehouse team",
                     text=f"Step {i}: check the pallet scanner, log shipment {i * 7} and sign form W-{i}. " * 3)
            for i in range(400)]
    h.build_index(index, h.DOCS + bulk)
    live = current_generation(index)
    sources = write_sources(tmp_path / "crawlers", site.url)
    hold = Hold(tmp_path / "hold", at="write_meta")
    proc = start_reindex(h, index, sources, hooks=hold.hooks)
    # Held once the new generation's index is written, before it is complete: killed there, nothing
    # of the run may be visible and the next run removes the half-written generation.
    partial = hold.wait(proc)
    assert partial.is_dir() and partial.parent == index and partial != live
    assert any(partial.iterdir()) and not (partial / "meta.json").exists()
    assert current_generation(index) == live and proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()
    # Held at the run's first `write_meta` (a sync write's version or the rebuild's): nothing of the run
    # was published, so the previous index is still the live one, complete.
    serving = current_generation(index)
    assert serving == live and (serving / "meta.json").is_file()
    with KnowledgeBase.open(index, create=False) as kb:
        assert kb.search("how do I reset my VPN password")[0].id == "vpn-reset"
        assert kb.search("pallet scanner shipment 700")  # served from the previous generation
    done = run_reindex(h, index, sources)
    assert done.returncode == 0, done.stderr
    assert current_generation(index) != live
    assert all((p / "meta.json").is_file() for p in index.glob("gen-*"))  # half-written ones were cleaned up
    assert "bulk-399" in ids(index)


def test_a_reindex_started_while_one_runs_exits_75_or_waits_its_turn(tmp_path, site, h):
    index = h.build_index(tmp_path / "idx")
    sources = write_sources(tmp_path / "crawlers", site.url)
    hold = Hold(tmp_path / "hold-1")
    a = start_reindex(h, index, sources, "--full", hooks=hold.hooks)  # --full: nothing changed, yet it rebuilds
    hold.wait(a)  # a holds the reindex lock until released
    b = start_reindex(h, index, sources)
    skipped = b.communicate(timeout=120)
    assert b.returncode == 75, skipped
    assert "another reindex" in skipped[1] and skipped[0] == ""
    hold.release()
    out = a.communicate(timeout=120)
    assert a.returncode == 0, out
    # With --wait the second one waits its turn and both complete.
    hold = Hold(tmp_path / "hold-2")
    asking = tmp_path / "b-asks-for-the-lock"
    a = start_reindex(h, index, sources, "--full", "--wait", "120", hooks=hold.hooks)
    hold.wait(a)
    b = start_reindex(h, index, sources, "--wait", "120", "--json", hooks={"KBT_LOCK_MARK": str(asking)})
    wait_until(asking.exists, b, "it asked for the reindex lock")
    assert b.poll() is None  # a still holds the lock: b is waiting, not failing
    hold.release()
    outs = [p.communicate(timeout=180) for p in (a, b)]
    assert [a.returncode, b.returncode] == [0, 0], outs
    assert json.loads(outs[1][0])["waited"] > 0


def test_searches_during_a_reindex_all_succeed(tmp_path, site, h):
    index = tmp_path / "idx"
    bulk = [Document(id=f"bulk-{i}", title=f"Shift handover note {i}",
                     text=f"Handover {i}: machine {i % 40} checked, oil level fine, next service in {i % 9} weeks.")
            for i in range(100)]
    h.build_index(index, h.DOCS + bulk)
    live = current_generation(index)
    srv = h.Server(index, tmp_path)
    try:
        hold = Hold(tmp_path / "hold")
        proc = start_reindex(h, index, write_sources(tmp_path / "crawlers", site.url), hooks=hold.hooks)
        results: list[tuple[int, str]] = []
        questions = ["how do I reset my VPN password", "paper jam printer third floor", "holiday days per year"]

        def search_all() -> None:
            for q in questions:
                r = requests.post(srv.url + "api/search", json={"question": q}, timeout=30)
                results.append((r.status_code, r.json()["hits"][0]["id"] if r.ok and r.json()["hits"] else ""))

        hold.wait(proc, between=search_all)  # searching while it syncs and builds ...
        for _ in range(3):  # ... and while its new generation is written but not yet live
            search_all()
        during = requests.get(srv.url + "api/health", timeout=10).json()
        assert during["generation"] == live.name
        hold.release()
        out = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        for q in questions:  # and after the switch
            r = requests.post(srv.url + "api/search", json={"question": q}, timeout=30)
            assert r.ok, r.text + srv.logs()
            results.append((r.status_code, r.json()["hits"][0]["id"]))
        health = requests.get(srv.url + "api/health", timeout=10).json()
    finally:
        srv.stop()
    assert len(results) >= 12  # at least 9 while the reindex ran, 3 after it
    assert all(code == 200 for code, _ in results), results
    assert {top for _, top in results} == {"vpn-reset", "printer-jam", "holiday"}
    assert health["generation"] != live.name  # the server follows the switch


def test_progress_is_a_live_line_on_a_terminal(tmp_path, h):
    import pty

    index = h.build_index(tmp_path / "idx")
    empty = tmp_path / "crawlers"
    empty.mkdir()
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([h.KBSEARCH, "reindex", "--full", "--index", str(index), "--sources", str(empty)],
                                stdout=subprocess.PIPE, stderr=slave, text=True, env=_env())
        os.close(slave)
        out, _ = proc.communicate(timeout=120)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0 and out.startswith("reindex ok: 0 sources")
    assert "\rrebuilding" in terminal.replace("\x1b[2K", "")  # one status line, redrawn in place
    assert "reindex:" not in terminal  # no plain log lines on a terminal
