"""CLI commands of the operations area: ``serve`` (HTTP API + page) and ``token`` (signed user tokens).

``reindex`` and ``report`` live in `_ops`.
"""

from __future__ import annotations

import signal
from pathlib import Path

import click

from ..errors import KbsearchError
from ._common import index_option, load_settings, open_kb


def register(main: click.Group) -> None:
    main.add_command(serve_cmd)
    main.add_command(token_cmd)


@click.command("serve")
@click.option("--host", default=None, help="Address to bind [default 127.0.0.1; web.host].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [default 8080; web.port].")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="Worker threads [default 8; web.threads].")
@index_option
def serve_cmd(host: str | None, port: int | None, threads: int | None, index_path: Path | None,
              config_file: Path | None) -> None:
    """Serve the HTTP API (/api/...) and the page employees use (/) with waitress.

    The portal vouches for users with trusted headers or signed tokens, both resting on the shared
    secret in $KBSEARCH_WEB_SECRET (see docs/web.md). Binds 127.0.0.1 unless told otherwise.
    Runs the outbox (what `kbsearch deliver` does) every peers.deliver_every seconds.

    \b
    Example:
      KBSEARCH_WEB_SECRET=$(cat /etc/kbsearch/secret) kbsearch serve --port 8080 --index indexes/default
    """
    from ..web import serve

    # No index is created here: a wrong --index or a missing mount is an error, not an empty server.
    kb = open_kb(index_path, config_file)
    every = kb.settings.peers.deliver_every
    outbox = f"outbox every {every:g} s" if every > 0 else "outbox loop off"

    def ready(url: str) -> None:
        click.echo(f"kbsearch serving {kb.root} on {url} ({outbox}; Ctrl-C or SIGTERM stops)", err=True)

    def stop(_signum: int, _frame: object) -> None:  # systemd's stop: end like Ctrl-C, loop and files closed
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    with kb:
        try:
            serve(kb, host=host, port=port, threads=threads, ready=ready)
        except OSError as exc:  # the address is taken or not ours
            address = f"{host or kb.settings.web.host}:{kb.settings.web.port if port is None else port}"
            raise KbsearchError(f"cannot serve on {address}: {exc.strerror or exc}") from None
        finally:
            signal.signal(signal.SIGTERM, previous)


@click.command("token")
@click.argument("user")
@click.option("-g", "--group", "groups", multiple=True, help="A group the user belongs to (repeatable).")
@index_option
def token_cmd(user: str, groups: tuple[str, ...], index_path: Path | None, config_file: Path | None) -> None:
    """Print a signed token for USER (for trying the API or page; portals call kbsearch.web.make_token).

    Open the page as http://HOST:PORT/#token=TOKEN or send "Authorization: Bearer TOKEN".

    \b
    Example:
      kbsearch token alice --group it-support
    """
    from ..web import make_token

    settings = load_settings(index_path, config_file)
    click.echo(make_token(user, groups, secret_env=settings.web.secret_env))
