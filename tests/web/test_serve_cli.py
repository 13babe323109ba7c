"""``kbsearch serve`` refuses in one line what it cannot do: an index that is not there (a wrong path
or a missing mount is never served as an empty index) and an address already taken."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from click.testing import CliRunner

from kbsearch import Document, KnowledgeBase
from kbsearch.cli import main


def test_no_index_is_an_error_and_none_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "mnt" / "index"
    out = CliRunner().invoke(main, ["serve", "--index", str(missing), "--port", "0"])
    assert out.exit_code == 1 and "no index at" in out.output and len(out.output.strip().splitlines()) == 1
    assert not missing.exists()


def _serve_on_a_taken_port(tmp_path: Path) -> tuple[int, object]:
    """Run ``kbsearch serve`` on a port another socket holds; (the port, click's result)."""
    index = tmp_path / "idx"
    with KnowledgeBase.open(index, create=True) as kb:
        kb.add([Document(id="d1", title="Printer jams", text="Open tray 2 and remove the paper.")])
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        return port, CliRunner().invoke(main, ["serve", "--index", str(index), "--port", str(port)],
                                        env={"KBSEARCH_PEERS_DELIVER_EVERY": "0"})
    finally:
        taken.close()


def test_an_address_in_use_is_one_line(tmp_path: Path) -> None:
    port, out = _serve_on_a_taken_port(tmp_path)
    assert out.exit_code == 1, out.output
    assert f"cannot serve on 127.0.0.1:{port}" in out.output and "Traceback" not in out.output
    assert "serving" not in out.output  # nothing claims to serve what was never bound


def test_the_command_leaves_the_callers_sigterm_handler_as_it_was(tmp_path: Path) -> None:
    """``serve`` ends on SIGTERM while it runs; a caller of the CLI in-process gets its handler back."""
    before = signal.getsignal(signal.SIGTERM)
    _, out = _serve_on_a_taken_port(tmp_path)
    assert out.exit_code == 1 and signal.getsignal(signal.SIGTERM) is before
