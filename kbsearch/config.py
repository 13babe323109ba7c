"""One place for every default: a documented settings tree and how it is loaded.

Precedence, lowest first: the defaults below < a TOML config file < ``KBSEARCH_*`` environment
variables < explicit arguments (CLI flags or keyword arguments).  A TOML file has one table per
section (``[index]``, ``[search]``, ``[rerank]``, ...); an environment variable names a section and a
field, e.g. ``KBSEARCH_SEARCH_CANDIDATES=50``; ``KBSEARCH_INDEX`` is short for the index path.
Secrets are never read from the config file: fields ending in ``_env`` name the environment
variable that holds the secret.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: Where `KnowledgeBase.open()` looks when no path is given.
DEFAULT_INDEX_PATH = Path("indexes") / "default"
#: Config file read when it exists in the working directory (or named by ``KBSEARCH_CONFIG``).
DEFAULT_CONFIG_FILE = Path("kbsearch.toml")


@dataclass
class IndexConfig:
    """Where the index lives and how writers behave."""

    #: Directory holding the index generations and their models.
    path: Path = DEFAULT_INDEX_PATH
    #: Seconds a second writer waits for the write lock; 0 fails at once with `IndexLockedError`.
    writer_timeout: float = 0.0
    #: Megabytes of posting buffer per writer (Whoosh ``limitmb``); larger indexes faster.
    writer_limitmb: int = 256
    #: Documents per batch when streaming documents into a writer.
    batch_size: int = 2000
    #: Complete generations kept on disk (the live one and its predecessors).
    keep_generations: int = 2
    #: ``stats`` calls a source stale when its last successful sync is older than this many days;
    #: set it above the interval of your scheduled ``kbsearch reindex`` (weekly crawls: 8).
    stale_after_days: float = 2.0


@dataclass
class SearchConfig:
    """How a natural-language question becomes a Whoosh query and a candidate list."""

    #: Candidates fetched from Whoosh before re-ranking.
    candidates: int = 40
    #: Hits returned by default.
    limit: int = 10
    #: Longest question accepted, in characters; longer ones raise `InvalidQuestionError`.
    max_question_chars: int = 20_000
    #: At most this many distinct query terms are kept (the rarest ones).
    max_query_terms: int = 10
    #: Terms in more than this share of document bodies are matched only in titles, questions and
    #: headings (their body postings cost much time and add little; the re-ranker still sees them).
    max_df_ratio: float = 0.04
    #: Terms in more than this share of titles / questions / headings are left to the re-ranker.
    max_name_df_ratio: float = 0.1
    #: Upper bound on the postings one retrieval query reads (rarest terms first): Whoosh scores
    #: postings in Python, so this bounds the time of a question however large the index grows.
    max_postings: int = 20_000
    #: Field boosts for BM25F retrieval.
    boost_title: float = 2.5
    boost_questions: float = 2.0
    boost_headings: float = 1.5
    boost_body: float = 1.0
    #: Snippet length in characters.
    snippet_chars: int = 240


@dataclass
class RerankConfig:
    """The TF-IDF model and how the final score fuses its parts."""

    #: Ranker used: "tfidf" (BM25F candidates re-scored by TF-IDF cosine) or "bm25" (BM25F only).
    ranker: str = "tfidf"
    #: Documents sampled (reservoir) to fit the TF-IDF vocabulary; bounds memory and time.
    fit_sample: int = 20_000
    #: Characters of body text used to represent a document for re-ranking.
    doc_chars: int = 600
    #: Weights of the fused score.
    weight_tfidf: float = 0.75
    weight_bm25: float = 0.25
    #: Bonuses and penalties from document signals.
    bonus_verified: float = 0.06
    bonus_accepted: float = 0.03
    penalty_outdated: float = 0.25
    #: Freshness: up to this bonus for documents updated recently, halving every ``half_life_days``.
    bonus_fresh: float = 0.02
    half_life_days: float = 365.0


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
    #: Most connections each process keeps open to PostgreSQL (psycopg_pool).
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


@dataclass
class DeflectConfig:
    """Deflection (`KnowledgeBase.ask`): answer from the index or ask the peers (see docs/deflect.md)."""

    #: Share of ANSWER decisions that must be right (on the archive's hold-outs); sets the threshold.
    target_precision: float = 0.85
    #: Extra precision that simulated hold-out questions (archives without real alternate phrasings:
    #: titles found from their answers, questions with words dropped) must reach, because they
    #: are a weaker stand-in for real questions than real rephrasings are.
    simulated_margin: float = 0.05
    #: Confidence from which possible answers are still shown (SUGGEST) instead of escalating at once.
    suggest_confidence: float = 0.3
    #: Assumed share of questions the archive cannot answer (weights the hold-outs in calibration).
    unanswerable_share: float = 0.2
    #: Decide with the larger of ``unanswerable_share`` and the share estimated at the last rebuild
    #: from the questions asked (their logged features, no labels needed; always estimated and
    #: reported).  Keeps answers right as often as ``target_precision`` promises when people ask
    #: more of what the archive does not hold (real traffic to FAQ bots: 35-70 %); where the
    #: estimate errs high (hard questions look unanswerable) it answers less.
    learn_unanswerable_share: bool = True
    #: Newest logged questions the estimate uses.
    share_estimate_asks: int = 2000
    #: Share of whole threads held out in calibration (their questions should escalate).
    holdout_threads: float = 0.2
    #: Share of a thread's alternate phrasings held out in calibration (they should find their thread).
    holdout_phrasings: float = 0.25
    #: Hold-out questions used to calibrate, at most (bounds rebuild time).
    calibration_queries: int = 4000
    #: Hold-out splits at most (small archives repeat the split to get enough questions).
    calibration_folds: int = 5
    #: Phrasings per thread the hold-out classifier is fitted on (0: all).  A cap makes rebuilds of
    #: archives with very many phrasings per thread faster, but the calibration then sees a weaker
    #: classifier than the one that answers (its scores mean less than they will).
    calibration_max_per_class: int = 0
    #: Archives with at least this many phrasings fit the answering model in a second process while
    #: the calibration runs (both are mostly a LinearSVC fit; on two cores CLINC150's rebuild took
    #: 26.8 s instead of 32.9 s).  Smaller archives fit in-process; -1: never in a second process.
    parallel_fit_phrasings: int = 5000
    #: Sentence encoder of the answer model: "auto" uses all-MiniLM-L6-v2 when the ``encoder``
    #: extra and its model are installed (see docs/deflect.md), "off" never, or a model folder.
    #: Documents without a classifier of their own (single-question threads, pages of an index up
    #: to ``max_model_docs``) are matched by their phrasings' sentence vectors ("crossed out" for
    #: strikethrough); the per-thread classifier reads each text's sentence vector beside its
    #: n-grams (CLINC150 P@1 0.942 -> 0.966).
    encoder: str = "auto"
    #: Threads with at least this many phrasings (title included) get a per-thread classifier.
    min_phrasings: int = 3
    #: Most classes of the classifier (the threads with the most phrasings win).
    max_classes: int = 3000
    #: Inverse regularisation of the classifier (LinearSVC C).
    classifier_c: float = 1.0
    #: Page sections are modelled too when the index holds at most this many documents.
    max_model_docs: int = 20_000
    #: A larger index is calibrated on this many of its pages, drawn at random (their headings are
    #: pseudo-questions that must find their own section through search), besides its answers.
    calibration_pages: int = 1000
    #: Hold-out questions decided through search as documents outside the answer model (pages of
    #: a large index, answers written after the rebuild), at most; they cost a search each.
    calibration_search_queries: int = 600
    #: Most the answer threshold moves from one calibration to the next (a refit, a reindex), so a
    #: handful of new answers and asks cannot swing it; 1.0: no bound.
    max_threshold_step: float = 0.1
    #: Characters of a document's body used by the answer model.
    body_chars: int = 1500
    #: Candidates taken from each signal (classifier, phrasings, TF-IDF, BM25) before scoring.
    candidates_per_signal: int = 5
    #: Search hits outside the answer model (pages of a large index, answers added since the last
    #: rebuild) considered per question; each costs a vectorisation of its text the first time.
    page_candidates: int = 10
    #: Documents found by meaning (the nearest sentence vectors of their titles and phrasings)
    #: considered beside search's hits: a rephrasing that shares no rare word with its page still
    #: finds it.  Needs the sentence encoder; the vectors are written when documents are indexed
    #: (a rebuild of ~100k sections takes a few minutes more).  0: none, and no vectors are written.
    dense_candidates: int = 10
    #: Possible answers shown with SUGGEST (and listed with ANSWER).
    suggestions: int = 3
    #: Weight of one feedback example relative to one hold-out question.
    feedback_weight: float = 5.0
    #: Feedback examples used at most (the newest): "helped" / "did not help", and the outcomes of
    #: escalations (closed as a duplicate, answered anew, closed as unanswerable).
    max_feedback: int = 5000
    #: How many production outcomes weigh as much as the archive's hold-outs in setting the answer
    #: threshold: with n outcomes the threshold at which they reach ``target_precision`` counts
    #: n / (n + outcome_prior).  Lower it to let real traffic take over sooner (a busy service whose
    #: questions look little like the archive); raise it when outcomes are few or noisy (people
    #: rarely click "helped").  A rebuild applies a change.
    outcome_prior: float = 200.0
    #: At a rebuild, a question whose asker said an answer solved it joins that answer's phrasings
    #: (as a duplicate's wording does at once when an expert closes it): the classifier learns how
    #: people ask.  Turn it off when "helped" is clicked carelessly (it would teach wrong phrasings).
    learn_phrasings: bool = True
    #: Archives with fewer documents than this, and fewer than 30 real rephrasings among their
    #: hold-outs (a few pages, no asked questions), only SUGGEST, never ANSWER, until 30 outcomes of
    #: their decisions show the target precision holds: their calibration holds out at most a few
    #: whole documents per split, which says little about off-topic questions that share a word
    #: with a page.  Lower it to let a small hand-checked FAQ answer from the start, raise it to be
    #: more careful; `stats` and the rebuild summary say when it applies.
    trusted_documents: int = 20
    #: Random seed of the hold-out split (calibration is reproducible).
    seed: int = 13


@dataclass
class Settings:
    """The whole settings tree; sections are added by the parts that own them."""

    index: IndexConfig = field(default_factory=IndexConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    web: WebConfig = field(default_factory=WebConfig)
    peers: PeersConfig = field(default_factory=PeersConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    route: RouteConfig = field(default_factory=RouteConfig)
    deflect: DeflectConfig = field(default_factory=DeflectConfig)

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults < ``config_file`` (or ``KBSEARCH_CONFIG`` / ./kbsearch.toml) < env < overrides.

        ``overrides`` use dotted names (``{"search.candidates": 50}``) or ``index_path``.
        """
        env = os.environ if env is None else env
        settings = cls()
        path = config_file or env.get("KBSEARCH_CONFIG")
        if path is None and DEFAULT_CONFIG_FILE.is_file():
            path = DEFAULT_CONFIG_FILE
        if path is not None:
            settings.apply_mapping(_read_toml(Path(path)), origin=str(path))
        settings.apply_env(env)
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "index_path":
                key = "index.path"
            section, _, name = key.partition(".")
            settings._set(section, name, value, origin="argument")
        return settings

    def apply_mapping(self, data: Mapping[str, Any], origin: str) -> None:
        """Apply a parsed TOML document; unknown sections or keys are errors, not ignored."""
        for section, values in data.items():
            if section == "groups":  # [[groups]]: peer groups, validated by kbsearch.peers.groups
                self._set("peers", "groups", values if isinstance(values, list) else [values], origin=origin)
                continue
            if not isinstance(values, Mapping):
                if section in _SECTION_EXTRAS:
                    continue
                raise ConfigError(f"{origin}: [{section}] must be a table")
            if section in _SECTION_EXTRAS:
                continue  # tables owned by other parts (e.g. [[groups]]), read by them
            for name, value in values.items():
                if section == "store" and name == "url" and isinstance(value, str) and _has_password(value):
                    raise ConfigError(f"{origin}: store.url must not hold a password (secrets come from the "
                                      "environment: KBSEARCH_DATABASE_URL, PGPASSWORD or ~/.pgpass)")
                self._set(section, name, value, origin=origin)

    def apply_env(self, env: Mapping[str, str]) -> None:
        """Apply ``KBSEARCH_<SECTION>_<FIELD>`` variables (and ``KBSEARCH_INDEX``, ``KBSEARCH_DATABASE_URL``)."""
        if env.get("KBSEARCH_INDEX"):
            self._set("index", "path", env["KBSEARCH_INDEX"], origin="KBSEARCH_INDEX")
        url, store_url = env.get("KBSEARCH_DATABASE_URL"), env.get("KBSEARCH_STORE_URL")
        if url and store_url and url != store_url:
            raise ConfigError("KBSEARCH_DATABASE_URL and KBSEARCH_STORE_URL name different databases; set one")
        if url:
            self._set("store", "url", url, origin="KBSEARCH_DATABASE_URL")
        sections = {f.name for f in dataclasses.fields(self)}
        for key, raw in env.items():
            if not key.startswith("KBSEARCH_") or key in ("KBSEARCH_INDEX", "KBSEARCH_CONFIG", "KBSEARCH_DATABASE_URL"):
                continue
            rest = key[len("KBSEARCH_"):].lower()
            section, _, name = rest.partition("_")
            if section not in sections or not name:
                continue  # not a setting (a secret named by some *_env, say)
            if name in _field_names(getattr(self, section)):
                self._set(section, name, raw, origin=key)
            elif key not in self._secret_names():
                # KBSEARCH_SEARCH_CANDIDATE=60 must not be silently ignored, like an unknown TOML key.
                near = difflib.get_close_matches(name, sorted(_field_names(getattr(self, section))), n=1)
                hint = f" (did you mean KBSEARCH_{section.upper()}_{near[0].upper()}?)" if near else ""
                raise ConfigError(f"{key}: unknown setting {section}.{name}{hint}; a secret for a "
                                  f"setting ending in _env may use any other name")

    def _secret_names(self) -> set[str]:
        """The environment variables that settings ending in ``_env`` name (secrets, not settings)."""
        names: set[str] = set()

        def walk(value: Any, key: str = "") -> None:
            if isinstance(value, str) and key.endswith("_env"):
                names.add(value)
            elif isinstance(value, Mapping):
                for k, v in value.items():
                    walk(v, str(k))
            elif isinstance(value, list):
                for v in value:
                    walk(v, key)
        walk(self.to_dict())
        return names

    def _set(self, section: str, name: str, value: Any, origin: str) -> None:
        target = getattr(self, section, None)
        if target is None or not dataclasses.is_dataclass(target):
            raise ConfigError(f"{origin}: unknown settings section {section!r}")
        if name not in _field_names(target):
            raise ConfigError(f"{origin}: unknown setting {section}.{name}")
        hints = typing.get_type_hints(type(target))
        setattr(target, name, _coerce(value, hints[name], f"{origin}: {section}.{name}"))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (paths as strings)."""
        def conv(v: Any) -> Any:
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, list):
                return [conv(x) for x in v]
            return v
        return conv(dataclasses.asdict(self))


#: Top-level TOML tables that belong to other parts of kbsearch (not settings sections).
_SECTION_EXTRAS: set[str] = {"groups", "sources"}


def _has_password(url: str) -> bool:
    """Whether a database URL carries a password (``user:secret@`` or a ``password=`` parameter)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return parts.password is not None or "password=" in parts.query
    except ValueError:
        return ":" in url.partition("@")[0].partition("://")[2]


def _field_names(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


#: Settings that are shares or probabilities: from 0 to 1.
_UNIT_SUFFIXES = ("_ratio", "_share", "precision", "_step", "_margin")
#: Settings whose documented -1 means "never".
_MINUS_ONE_MEANS_NEVER = frozenset({"parallel_fit_phrasings"})


def _in_range(number: int | float, where: str) -> int | float:
    """``number`` if it fits its setting: no setting is negative; shares and probabilities are at most 1."""
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{where}: must be a finite number")
    name = where.rsplit(".", 1)[-1]
    if number < 0 and not (number == -1 and name in _MINUS_ONE_MEANS_NEVER):
        raise ConfigError(f"{where}: must not be negative (got {number})")
    if name.endswith(_UNIT_SUFFIXES) and number > 1:
        raise ConfigError(f"{where}: must be between 0 and 1 (got {number})")
    return number


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` (from TOML, env or a flag) to the annotated type or raise `ConfigError`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            if type(None) in args:
                return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if hint is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return _in_range(int(value), where)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return _in_range(float(value), where)
        if hint is Path:
            return Path(value)
        if hint is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
        if origin in (list, tuple):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return list(value) if origin is list else tuple(value)
        if origin is dict:
            if not isinstance(value, Mapping):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: invalid value {value!r}") from None
    return value
