"""Discourse import over its REST API (``requests``): categories → groups, solved topics → answers.

Topics are listed from ``/latest.json`` (paged), categories from ``/categories.json``; each changed
topic is read from ``/t/{id}.json`` (and ``/t/{id}/posts.json`` for posts beyond the first page).
A topic becomes one peer-answer document: title = the topic title, ``questions`` = the first post,
text = the accepted post (Discourse "Solved"), or with ``include_unsolved`` the most-liked reply.
Incremental: a topic whose ``bumped_at`` did not change since the last sync is not fetched again.
The API key (if any) comes from the environment variable named by ``api_key_env``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..documents import Document, make_id
from ..errors import ConfigError, InvalidDocumentError, SourceError
from . import Progress, SourceReport
from ._qa import Item, check_keys, html_to_text, option, sync_stream

if TYPE_CHECKING:
    from .._protocols import DocumentStore

log = logging.getLogger(__name__)


class DiscourseSource:
    """Solved topics of a Discourse forum, streamed into the index."""

    def __init__(self, name: str, base_url: str, *, api_key_env: str = "", api_username: str = "",
                 categories: list[str] | None = None, category_groups: Mapping[str, str] | None = None,
                 include_unsolved: bool = False, min_likes: int = 1, max_pages: int = 1000,
                 timeout: float = 20.0, allowed_groups: tuple[str, ...] = (), state_dir: Path | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"source {name!r}: base_url must be an http(s) URL")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.api_username = api_username
        self.categories = set(categories or [])
        self.category_groups = dict(category_groups or {})
        self.include_unsolved = include_unsolved
        self.min_likes = min_likes
        self.max_pages = max_pages
        self.timeout = timeout
        self.allowed_groups = tuple(allowed_groups)
        self.state_dir = state_dir
        self.skipped: list[dict[str, str]] = []

    # -- HTTP -------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = requests.Session()
        retry = Retry(total=4, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=("GET",), respect_retry_after_header=True, raise_on_status=False)
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        session.headers["Accept"] = "application/json"
        session.headers["User-Agent"] = "kbsearch-import/1"
        if self.api_key_env:
            key = os.environ.get(self.api_key_env, "")
            if not key:
                raise SourceError(f"source {self.name}: environment variable {self.api_key_env} is not set")
            session.headers["Api-Key"] = key
            if self.api_username:
                session.headers["Api-Username"] = self.api_username
        return session

    def _get(self, session: requests.Session, path: str, params: Any = None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            response = session.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SourceError(f"source {self.name}: {path}: {type(exc).__name__}") from None
        with response:
            if response.status_code != 200:
                raise SourceError(f"source {self.name}: {path}: HTTP {response.status_code}")
            try:
                data = response.json()
            except ValueError:
                raise SourceError(f"source {self.name}: {path}: not JSON") from None
        if not isinstance(data, dict):
            raise SourceError(f"source {self.name}: {path}: unexpected JSON shape")
        return data

    # -- state ------------------------------------------------------------------------------
    def _state_path(self, kb: DocumentStore) -> Path:
        return (self.state_dir or Path(kb.root) / "sources") / f"{self.name}.discourse.json"

    def _load_state(self, kb: DocumentStore) -> dict[str, str]:
        try:
            return json.loads(self._state_path(kb).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _save_state(self, kb: DocumentStore, state: dict[str, str]) -> None:
        path = self._state_path(kb)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(path)

    # -- reading ----------------------------------------------------------------------------
    def _category_names(self, session: requests.Session) -> dict[int, tuple[str, str]]:
        data = self._get(session, "/categories.json", {"include_subcategories": "true"})
        names: dict[int, tuple[str, str]] = {}

        def walk(cats: list[Any]) -> None:
            for cat in cats or []:
                if isinstance(cat, dict) and "id" in cat:
                    names[int(cat["id"])] = (str(cat.get("name", "")), str(cat.get("slug", "")))
                    walk(cat.get("subcategory_list") or [])

        walk((data.get("category_list") or {}).get("categories") or [])
        return names

    def _topics(self, session: requests.Session) -> Iterator[dict[str, Any]]:
        seen: set[int] = set()
        for page in range(self.max_pages):
            data = self._get(session, "/latest.json", {"page": page, "order": "created", "ascending": "true"})
            topic_list = data.get("topic_list") or {}
            topics = topic_list.get("topics") or []
            fresh = [t for t in topics if isinstance(t, dict) and t.get("id") not in seen]
            for topic in fresh:
                seen.add(topic["id"])
                yield topic
            if not fresh or not topic_list.get("more_topics_url"):
                return
        log.warning("%s: stopped after max_pages=%d pages of topics", self.name, self.max_pages)

    def _posts(self, session: requests.Session, topic: dict[str, Any]) -> list[dict[str, Any]]:
        stream = topic.get("post_stream") or {}
        posts = [p for p in stream.get("posts") or [] if isinstance(p, dict)]
        have = {p.get("id") for p in posts}
        missing = [pid for pid in stream.get("stream") or [] if pid not in have]
        for start in range(0, len(missing), 50):
            chunk = missing[start:start + 50]
            more = self._get(session, f"/t/{int(topic['id'])}/posts.json", {"post_ids[]": chunk})
            posts += [p for p in (more.get("post_stream") or {}).get("posts") or [] if isinstance(p, dict)]
        return sorted(posts, key=lambda p: int(p.get("post_number", 0)))

    def _document(self, topic: dict[str, Any], posts: list[dict[str, Any]], group: str | None) -> Document | None:
        if not posts:
            return None
        first, replies = posts[0], posts[1:]
        accepted_number = (topic.get("accepted_answer") or {}).get("post_number")
        chosen = next((p for p in replies if p.get("accepted_answer") or p.get("post_number") == accepted_number), None)
        accepted = chosen is not None
        if chosen is None and self.include_unsolved:
            liked = [p for p in replies if _likes(p) >= self.min_likes]
            chosen = max(liked, key=_likes, default=None)
        if chosen is None:
            return None
        question = html_to_text(first.get("cooked"))
        title = str(topic.get("title") or topic.get("fancy_title") or "").strip()
        slug = topic.get("slug") or "topic"
        return Document(
            id=make_id(self.name, str(topic["id"])), title=title, text=html_to_text(chosen.get("cooked")),
            kind="answer", url=f"{self.base_url}/t/{slug}/{topic['id']}/{chosen.get('post_number', 1)}",
            questions=(question,) if question and question != title else (), group=group,
            allowed_groups=self.allowed_groups, source=self.name, asked=topic.get("created_at"),
            updated=chosen.get("updated_at") or topic.get("last_posted_at"), accepted=accepted, votes=_likes(chosen),
        ).checked()

    def items(self, old: dict[str, str], new: dict[str, str], keep: set[str]) -> Iterator[Item]:
        """Documents of changed solved topics; unchanged ones (same ``bumped_at`` as in ``old``) go to ``keep``."""
        session = self._session()
        self.skipped = []
        try:
            categories = self._category_names(session)
            for listed in self._topics(session):
                tid = str(listed["id"])
                name, slug = categories.get(int(listed.get("category_id") or 0), ("", ""))
                if self.categories and name not in self.categories and slug not in self.categories:
                    continue
                stamp = str(listed.get("bumped_at") or listed.get("last_posted_at") or "")
                if stamp and old.get(tid) == stamp:
                    keep.add(make_id(self.name, tid))
                    new[tid] = stamp
                    continue
                try:
                    topic = self._get(session, f"/t/{int(tid)}.json")
                    group = self.category_groups.get(name) or self.category_groups.get(slug) or name or None
                    doc = self._document(topic, self._posts(session, topic), group)
                except SourceError as exc:
                    yield (f"topic {tid}", str(exc))
                    continue
                except (InvalidDocumentError, ValueError, TypeError, KeyError) as exc:
                    yield (f"topic {tid}", f"unexpected topic data: {exc}")
                    continue
                new[tid] = stamp
                if doc is None:
                    self.skipped.append({"item": f"topic {tid}", "reason": "no accepted answer"})
                    continue
                yield doc
        finally:
            session.close()

    def sync(self, kb: DocumentStore, *, full: bool = False, progress: Progress | None = None) -> SourceReport:
        """Import solved topics; unchanged topics are not fetched again unless ``full``."""
        old = {} if full else self._load_state(kb)
        new: dict[str, str] = {}
        keep: set[str] = set()
        try:
            report = sync_stream(kb, self.name, "discourse", self.items(old, new, keep), progress=progress, keep=keep)
        finally:
            # Topics read this time replace their old stamps; a failed topic keeps no stamp and is read again.
            self._save_state(kb, {**old, **new})
        report.skipped = len(self.skipped)
        report.skips = self.skipped[:100]
        return report


def _likes(post: dict[str, Any]) -> int:
    if isinstance(post.get("like_count"), int):
        return post["like_count"]
    for action in post.get("actions_summary") or []:
        if isinstance(action, dict) and action.get("id") == 2:
            return int(action.get("count", 0))
    return 0


def make_discourse_source(name: str, table: Mapping[str, Any]) -> DiscourseSource:
    """``type = "discourse"``: ``base_url`` (required), ``api_key_env``, ``api_username``, ``categories``,
    ``category_groups``, ``include_unsolved``, ``min_likes``, ``max_pages``, ``timeout``, ``allowed_groups``."""
    keys = {"base_url", "api_key_env", "api_username", "categories", "category_groups", "include_unsolved",
            "min_likes", "max_pages", "timeout", "allowed_groups"}
    check_keys(table, keys, name)
    if "api_key" in table:
        raise ConfigError(f"source {name!r}: put the API key in an environment variable named by api_key_env")
    base_url = option(table, "base_url", str, None, name)
    if not base_url:
        raise ConfigError(f"source {name!r}: base_url is required")
    return DiscourseSource(
        name, base_url, api_key_env=option(table, "api_key_env", str, "", name),
        api_username=option(table, "api_username", str, "", name),
        categories=option(table, "categories", list, [], name),
        category_groups=option(table, "category_groups", dict, {}, name),
        include_unsolved=bool(table.get("include_unsolved", False)), min_likes=option(table, "min_likes", int, 1, name),
        max_pages=option(table, "max_pages", int, 1000, name),
        timeout=float(option(table, "timeout", (int, float), 20.0, name)),
        allowed_groups=tuple(option(table, "allowed_groups", list, [], name)),
    )
