"""The settings sections of what the index serves and talks to: the web app (`WebConfig`), the peers
(`PeersConfig`, `RouteConfig`), the shared store (`StoreConfig`) and the crawler (`CrawlConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class WebConfig:
    """The HTTP API, the page and the nightly reindex (``kbsearch serve`` / ``reindex``)."""

    #: Address ``kbsearch serve`` binds; loopback by default (put a portal or proxy in front).
    host: str = "127.0.0.1"
    port: int = 8080
    #: Worker threads of the WSGI server (waitress).
    threads: int = 8
    #: Environment variable holding the shared secret of the portal (trusted headers and signed tokens).
    secret_env: str = "KBSEARCH_WEB_SECRET"
    #: Seconds a signed user token stays valid.
    token_max_age: int = 12 * 3600
    #: Let callers without credentials search and ask (public documents only).
    allow_anonymous: bool = True
    #: Largest JSON request body, in bytes.
    max_json_bytes: int = 64 * 1024
    #: Largest photo attached to an escalation, in bytes.
    max_photo_bytes: int = 5 * 1024 * 1024
    #: CSP ``frame-ancestors`` of the page: who may embed it in a frame (e.g. "'self' https://portal").
    frame_ancestors: str = "'self'"
    #: Directory with the source definitions read by ``kbsearch reindex``.
    sources_dir: Path = Path("crawlers")
    #: Seconds a second ``kbsearch reindex`` waits for a running one; 0 exits at once (exit code 75).
    reindex_wait: float = 0.0
    #: Groups whose members may read ``GET /api/report`` (it lists other people's unanswered questions).
    report_groups: list[str] = field(default_factory=lambda: ["kbsearch-admins"])
    #: Origins (``https://portal.example``) whose pages may send POSTs with the user's cookies through
    #: the proxy; other sites' are refused (403).  The page's own origin is always allowed: list the
    #: portal's origin when portal pages on another host call ``/api/`` (bearer tokens need no entry).
    portal_origins: list[str] = field(default_factory=list)


@dataclass
class PeersConfig:
    """Peer groups and the answer loop: escalations, notifications, answers flowing back.

    The groups themselves are ``[[groups]]`` tables of the same TOML file (see docs/peers.md).
    """

    #: Group for questions that fit no configured group (created implicitly when not configured).
    default_group: str = "general"
    #: Escalation store: "auto" (PostgreSQL when ``store.url`` is set, else SQLite), "sqlite"
    #: (``peers.sqlite3`` in the index directory, whatever ``store.url`` says) or "postgresql"
    #: (``store.url`` must be set).
    store: str = "auto"
    #: Seconds a writer waits for SQLite's lock before failing.
    busy_timeout: float = 30.0
    #: Deliver notifications right after the change that queues them (a new escalation; an answer,
    #: verification or duplicate for the asker); failures are retried later.  Turn off when a slow
    #: channel must not delay the request and `kbsearch deliver` runs often.
    deliver_on_escalate: bool = True
    #: Seconds between the outbox runs of every ``kbsearch serve`` process (retries, reminders, the
    #: SLA, answers waiting for the index: what `kbsearch deliver` does); 0 turns the loop off, e.g.
    #: when a cron job runs `kbsearch deliver` instead.  Several servers may run it at once: each
    #: notification is claimed by one of them and sent once.
    deliver_every: float = 60.0
    #: Retries: first wait, growth factor, longest wait (seconds) and attempts before giving up.
    retry_initial: float = 30.0
    retry_factor: float = 2.0
    retry_max: float = 3600.0
    max_attempts: int = 30
    #: Seconds a delivering process owns a claimed notification before another may retry it.
    claim_seconds: float = 120.0
    #: Seconds to wait for a webhook or SMTP server.
    send_timeout: float = 10.0
    #: Hours after which the experts of a group are reminded once of an unanswered escalation (0: never).
    remind_after_hours: float = 24.0
    #: SLA (`kbsearch.peers._sla`, run by every `kbsearch deliver` and by `kbsearch sla`; a group's
    #: ``[[groups]]`` table may override the next four).  After the first reminder, remind again every
    #: this many hours while the question stays open in the same group (0: only the first reminder) ...
    remind_every_hours: float = 0.0
    #: ... at most this many reminders per group (the first included).
    max_reminders: int = 3
    #: Hours a question may wait unanswered in one group before it is overdue (0: never): it is then
    #: handed to ``fallback_group`` (like a reroute: the new group and the asker are told), and
    #: ``sla_lead`` is e-mailed.  With neither, it is marked overdue (history, ``escalation.overdue`` on
    #: the group's webhooks, listed by `kbsearch sla`), never dropped.
    fallback_after_hours: float = 0.0
    #: Group an overdue question is handed to (empty: the default group).  A question is never handed
    #: to a group it was in before, so fallback chains end.
    fallback_group: str = ""
    #: Person (e-mail address, or a name completed by ``asker_email_domain``) told of overdue questions.
    sla_lead: str = ""
    #: SMTP server for e-mail channels; the password comes from the environment variable named here.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password_env: str = "KBSEARCH_SMTP_PASSWORD"
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    mail_from: str = "kbsearch@localhost"
    #: Link to an escalation shown in notifications and on answer documents; ``{id}`` is replaced
    #: (empty: no link).  Point it at the page: ``https://kb.example.com/#esc={id}`` opens that question.
    escalation_url: str = ""
    #: E-mail the asker when their question is answered, verified or closed as a duplicate.  Only
    #: when e-mail is in use (a group has an ``email`` channel, so an SMTP server is set up); turn off
    #: when the portal tells askers itself or askers' names are not mailboxes.
    asker_email: bool = True
    #: Domain added to an asker's user name that is not an e-mail address ("ana" → "ana@<domain>");
    #: empty: such askers get no e-mail (logged), only the page's "My questions" and the webhook events.
    asker_email_domain: str = ""
    #: Attachments: largest size in bytes, most per escalation, accepted content types.
    max_attachment_bytes: int = 5 * 1024 * 1024
    max_attachments: int = 5
    attachment_types: list[str] = field(default_factory=lambda: [
        "image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "application/pdf", "text/plain"])
    #: Similar questions (`KnowledgeBase.similar_questions`, ``POST /api/similar``): how many of the
    #: newest open and answered escalations are compared (bounds the work per call), the lowest TF-IDF
    #: cosine similarity shown, and how many are shown at most.
    similar_candidates: int = 2000
    similar_min_score: float = 0.3
    similar_limit: int = 5
    #: Seconds `answer` waits for the index writer lock (the answer is stored first either way).
    index_wait: float = 30.0
    #: Parsed ``[[groups]]`` tables (filled from the config file; validated by `kbsearch.peers.groups`).
    groups: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StoreConfig:
    """The database of the mutable state (escalations, attachments, the outbox); see docs/postgresql.md.

    Empty ``url``: SQLite files in the index directory (embedded, no server: one machine).  A
    ``postgresql://user@host:5432/dbname`` URL: a shared PostgreSQL, so several ``kbsearch serve``
    processes on several machines see the same escalations; no SQLite file is then created for them.
    ``KBSEARCH_DATABASE_URL`` sets it too.  The password comes from the environment only: in
    ``KBSEARCH_DATABASE_URL``, or PostgreSQL's own ``PGPASSWORD`` / ``~/.pgpass``; a URL with a
    password in the config file is refused.  Messages and logs show the URL without it.
    """

    url: str = ""
    #: Connections the peer store and the usage log may each use at once per process; they share one
    #: pool (psycopg_pool) with the crawl state, so a process holds at most 2 × this + 4.
    pool_size: int = 10
    #: Seconds to wait for PostgreSQL to accept a connection (and for a free pooled one).
    connect_timeout: float = 10.0


@dataclass
class RouteConfig:
    """Routing an escalated question to a peer group (`kbsearch.peers.route`)."""

    #: Below this confidence the question goes to the default group.
    min_confidence: float = 0.25
    #: Times each group's description and keywords count as training examples (history comes first).
    prior_weight: float = 3.0
    #: Inverse regularisation strength of the linear SVM (larger fits the history more closely).
    c: float = 1.0


@dataclass
class CrawlConfig:
    """The intranet crawler (kbsearch/sources/crawl): politeness, limits, timeouts; a source file may override each."""

    #: Sent with every request; names kbsearch so site owners know who is calling.
    user_agent: str = "kbsearch-crawler/0.1 (intranet search indexer)"
    #: Minimum seconds between two request starts to one host (robots.txt Crawl-delay raises it).
    delay: float = 0.0
    #: Concurrent connections to one host.
    connections_per_host: int = 4
    #: Fetching threads in total (across hosts).
    fetch_threads: int = 4
    #: Processes parsing HTML (0 parses in the crawling process; both cores pay on large sites).
    parse_workers: int = 2
    connect_timeout: float = 5.0
    #: Seconds a single socket read may wait.
    read_timeout: float = 15.0
    #: Seconds a whole page may take to arrive (a server dripping bytes is cut off).
    page_timeout: float = 60.0
    #: Retries of a request after a connection error, timeout, 429 or 5xx (with back-off).
    retries: int = 2
    #: Back-off factor in seconds (urllib3: factor * 2**(retry-1)).
    backoff: float = 0.5
    #: Longest Retry-After honoured, in seconds.
    retry_after_max: float = 30.0
    #: Pages fetched per run at most (the run is then reported incomplete and deletes nothing).
    max_pages: int = 10_000
    #: Link depth from the start URLs.
    max_depth: int = 50
    #: Pages larger than this many bytes are skipped (and reported).
    max_bytes: int = 5_000_000
    max_redirects: int = 10
    #: Distinct query strings per path (bounds calendars and faceted-search traps).
    max_query_variants: int = 20
    #: Consecutive connection failures after which a host is given up for the run.
    host_failure_limit: int = 8
    respect_robots: bool = True
    #: Read sitemap.xml (and the sitemaps robots.txt names) to find pages.
    sitemaps: bool = True
    #: Documents written to the index per batch while crawling.
    batch_size: int = 500
    #: Extra class / id names of page chrome to strip, besides navigation, headers, footers, sidebars.
    strip_classes: list[str] = field(default_factory=list)
    #: A block of text (paragraph, list item, ...) found on at least this share of a source's pages
    #: is site template (banner, navigation, footer) and is not indexed.  Lower it when a site's
    #: theme differs between its parts (each part's chrome then recurs on fewer pages); 0 keeps all.
    template_share: float = 0.5
    #: ... and on at least this many pages: text a small site repeats on a few pages is content.
    template_min_pages: int = 5
    verify_tls: bool = True
