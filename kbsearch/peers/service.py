"""The answer loop behind `KnowledgeBase`'s peer methods: escalate, notify, answer, index.

`PeerLoop` ties together the groups (config), the router (per index generation), the escalation
store and its outbox.  Order matters for "nothing is lost": an escalation and its notifications are
written in one transaction before any delivery is tried; an answer is stored before it is indexed,
and an answer whose indexing failed (lock held, process killed) is indexed by the next
`deliver`/`index_pending` or by the ``escalations`` source during reindex.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._text import clean_text
from ..access import ALL_GROUPS, may_see, normalise_groups
from ..documents import Document, make_id
from ..errors import (
    IndexLockedError,
    InvalidEscalationError,
    NotFoundError,
    PermissionDeniedError,
)
from .route import Router, Routing
from ..search import clean_question
from ..storage.filecache import MISSING, FileCache, file_stamp
from ._claim_rules import ClaimRules
from ._similar import rank_similar
from ._intake import AttachmentInput, DecisionInput, SeenItem, check_attachments, decision_dict, seen_id
from ._sla import SlaRunner
from .groups import Group, Groups
from .outbox import (
    DeliveryReport,
    Outbox,
    asker_notices,
    escalation_summary,
    notifications_for,
    reroute_notices,
)
from ._open import STORE_FILE, open_store  # noqa: F401 - STORE_FILE: re-exported
from .store import Escalation, EscalationStore, NewNotification, Notify

if TYPE_CHECKING:
    from .._protocols import AnswerIndex

log = logging.getLogger(__name__)

SOURCE = "escalations"


def answer_doc_id(escalation_id: str) -> str:
    """The stable index id of an escalation's answer."""
    return make_id(SOURCE, escalation_id)


def _same(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


class PeerLoop:
    """Escalations, routing, notifications and answers of one knowledge base."""

    def __init__(self, kb: AnswerIndex, *, store: EscalationStore | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.kb = kb
        self.cfg = kb.settings.peers
        self.groups = Groups.from_config(self.cfg)
        if store is None:
            store = open_store(kb.root, kb.settings)
            assert store is not None
        self.store = store
        self.outbox = Outbox(store, self.groups, self.cfg, env=env)
        self._router: FileCache[Router] = FileCache()
        self._index_lock = threading.RLock()
        #: Claim, assign and give back questions (`_claim_rules.ClaimRules`).
        self.claims = ClaimRules(self)
        #: Repeated reminders, fallback group and lead for unanswered questions (`_sla.SlaRunner`).
        self.sla = SlaRunner(self)

    def close(self) -> None:
        """Release the store's connections (a PostgreSQL pool); the knowledge base closes its loop."""
        self.store.close()

    # -- routing ----------------------------------------------------------------------------
    def router(self) -> Router:
        """The live generation's router (refitted from the documents if that generation has none)."""
        gen = self.kb.generation_path
        stored = gen / "route" / "router.json"

        def stamp() -> tuple[object, ...]:
            """The file's identity, not the version's name: forked versions share an unchanged router
            (without one, the version's name: its router is fitted from its documents)."""
            found = file_stamp(stored)
            return found if found[0] != MISSING else (str(gen),)

        return self._router.get(stamp, lambda _old: self._load_router(gen, stored))

    def _load_router(self, gen: Path, stored: Path) -> Router:
        """The router stored with ``gen``, or one fitted from the documents (see `router`)."""
        router = Router.load(gen) if stored.is_file() else None
        described = {g.name for g in self.groups if g.description or g.keywords}
        if router is not None and not described <= set(router.classes):
            # Fitted before these groups were configured (the config changed since the rebuild):
            # refit in memory rather than route with the groups of then.
            log.info("routing model of %s lacks configured groups %s; refitting it for this process",
                     gen.name, ", ".join(sorted(described - set(router.classes))))
            router = None
        if router is None:
            router = Router.from_documents(self.kb.documents(), self.groups, self.kb.settings.route)
        return router

    def route(self, question: str, *, group: str | None = None, groups: object = ALL_GROUPS) -> Routing:
        """Rank the peer groups for ``question`` asked by a member of ``groups`` (its reason names
        only words of documents that caller may see)."""
        question = self._check_question(question)
        words = self.kb.visible_words(question, groups)
        return self.router().route(words, self.groups, group=group,
                                   min_confidence=self.kb.settings.route.min_confidence,
                                   default=self.groups.default)

    # -- escalating -------------------------------------------------------------------------
    def _check_question(self, question: str) -> str:
        """The question cleaned like one asked (`clean_question`): NUL-only or blank ones are refused here too."""
        return clean_question(question, self.kb.settings.search.max_question_chars)

    def _check_attachments(self, attachments: Iterable[AttachmentInput]) -> list[tuple[str, str, bytes]]:
        return check_attachments(attachments, self.cfg)

    def escalate(self, question: str, *, user: str | None = None, group: str | None = None,
                 groups: object = ALL_GROUPS, seen: Iterable[SeenItem] = (),
                 attachments: Iterable[AttachmentInput] = (), decision: DecisionInput | None = None, note: str = "",
                 deliver: bool | None = None, idempotency_key: str | None = None) -> Escalation:
        """Store the question for a peer group (routed unless ``group`` is given) and notify it.

        ``groups`` are the asker's: ``seen`` keeps only documents both the asker and the group that
        receives the question may see, with their titles and links read from the index.
        ``idempotency_key``: the client's key for this question; asked again with it (a retry), the
        escalation stored the first time comes back (``replayed``) and nothing is stored or sent.
        """
        question = self._check_question(question)
        files = self._check_attachments(attachments)
        fingerprint = ""
        if idempotency_key is not None:
            if (not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 255 or "," in idempotency_key
                    or not idempotency_key.isascii() or not idempotency_key.isprintable()):
                # A comma: two Idempotency-Key headers merged into one value by a server or proxy.
                raise InvalidEscalationError("idempotency key: one, of 1 to 255 printable ASCII characters but commas")
            fingerprint = hashlib.sha256(json.dumps(
                [question, group, note if isinstance(note, str) else None, [hashlib.sha256(f[2]).hexdigest() for f in files]],
                ensure_ascii=False).encode("utf-8")).hexdigest()
        seen_ids = [seen_id(s) for s in seen]
        if not seen_ids and decision is not None and hasattr(decision, "hits"):
            seen_ids = [seen_id(h) for h in getattr(decision, "hits") or ()]
        earlier = getattr(decision, "routing", None)
        if isinstance(earlier, Routing) and group is not None and earlier.group == group and not earlier.explicit:
            routing = earlier  # the deflection decision already routed it: keep its reason
        else:
            try:
                routing = self.route(question, group=group, groups=groups)
            except InvalidEscalationError:
                if decision is None:
                    raise  # a person typed an unknown group: say so
                log.warning("escalate: group %r from the decision is unknown; routing instead", group)
                routing = self.route(question, groups=groups)
        visible = self._visible_to(normalise_groups(groups), routing.group)
        seen_items = self._seen(seen_ids, visible)
        decision_data = decision_dict(decision, visible)
        if not isinstance(note, str) or len(note) > self.kb.settings.search.max_question_chars:
            raise InvalidEscalationError("note: expected a string no longer than a question")
        note = clean_text(note)

        def notify(esc: Escalation) -> list[Any]:
            return notifications_for(esc.group, escalation_summary(esc, self.cfg), self.groups, "escalated")

        esc = self.store.create(question, group=routing.group, user=user, note=note.strip(),
                                routing=routing.to_dict(), decision=decision_data, seen=seen_items,
                                attachments=files, notify=notify, key=idempotency_key, fingerprint=fingerprint)
        if esc.replayed:
            log.info("escalation %s asked again with its idempotency key: nothing stored", esc.id)
            return esc
        log.info("escalated %s to %s (%s)", esc.id, esc.group, routing.reason)
        self._deliver_now(esc.id, deliver)
        return self.store.get(esc.id, history=True)

    def _deliver_now(self, escalation_id: str, deliver: bool | None = None) -> None:
        """Send an escalation's due notifications now (``peers.deliver_on_escalate``); whatever fails
        stays in the outbox for the next `deliver`, and never undoes the stored change."""
        if not (self.cfg.deliver_on_escalate if deliver is None else deliver):
            return
        try:
            self.outbox.deliver(escalation_id=escalation_id)
        except Exception:  # delivery problems never lose the stored change
            log.exception("delivering notifications of %s failed; they stay in the outbox", escalation_id)

    def _asker_notify(self, extra: dict[str, Any] | None = None) -> Notify:
        """The store's ``notify``: the asker's notices for a change, committed with the change."""
        def notify(before: Escalation, after: Escalation) -> list[NewNotification]:
            return asker_notices(before, after, self.groups, self.cfg, extra)
        return notify

    def _visible_to(self, asker: frozenset[str] | None, group: str) -> Callable[[str], bool]:
        """Whether a document may be shown in an escalation of ``group``: the asker (``asker``; None for
        a trusted caller) and every group that receives the escalation must be allowed to see it."""
        readers = {group, self.groups.notify_group(group).name}

        def visible(doc_id: str) -> bool:
            doc = self.kb.get(doc_id, user_groups=ALL_GROUPS if asker is None else asker)
            return doc is not None and all(may_see(doc.allowed_groups, frozenset({g})) for g in readers)
        return visible

    def _seen(self, seen: Sequence[tuple[str, float | None]], visible: Callable[[str], bool]) -> list[dict[str, Any]]:
        """The documents the asker saw and rejected, as the escalation shows them to its group."""
        items: list[dict[str, Any]] = []
        left_out = 0
        done: set[str] = set()
        for doc_id, score in seen:
            if doc_id in done:
                continue
            done.add(doc_id)
            doc = self.kb.get(doc_id) if visible(doc_id) else None
            if doc is None:  # unknown, deleted or not for these readers: all look the same
                left_out += 1
                continue
            item: dict[str, Any] = {"id": doc.id, "title": doc.title, "url": doc.url}
            if score is not None:
                item["score"] = score
            items.append(item)
        if left_out:
            log.info("escalate: %d seen document(s) left out (unknown, or not for this group)", left_out)
        return items

    # -- answers ----------------------------------------------------------------------------
    def group(self, name: str) -> Group | None:
        return self.groups.get(name)

    def _check_expert(self, esc: Escalation, by: str | None) -> None:
        group = self.groups.get(esc.group)
        if by is not None and group is not None and group.experts and by not in group.experts:
            raise PermissionDeniedError(f"{by} is not an expert of {esc.group}; only experts verify answers")

    def is_expert(self, esc: Escalation, by: str | None) -> bool:
        """Whether ``by`` speaks for ``esc``'s group: one of its configured experts, or a caller naming
        nobody (``by=None``: the operator's CLI or Python code, trusted like an expert)."""
        if by is None:
            return True
        group = self.groups.get(esc.group)
        return group is not None and by in group.experts

    def _authorize_change(self, by: str | None) -> Any:
        """The check `record_answer` runs on the stored escalation, inside its write transaction.

        Rule: the first answer may come from anyone the caller let through (the web API admits the
        group's members).  An existing answer may be replaced only by its answerer or an expert (with no
        experts configured: only by its answerer, since nobody speaks for the group).  A verified
        answer keeps its mark only when an expert changes it; the answerer's own edit un-verifies it.
        """
        def authorize(esc: Escalation) -> bool:
            expert = self.is_expert(esc, by)
            if esc.answer is not None and not expert and by != esc.answered_by:
                who = esc.answered_by or "the operator"
                raise PermissionDeniedError(
                    f"{by} may not change the answer of {esc.id}: only its answerer ({who}) or an expert of "
                    f"{esc.group} may" + ("" if self._has_experts(esc) else " (the group has no experts configured)"))
            return expert
        return authorize

    def _has_experts(self, esc: Escalation) -> bool:
        group = self.groups.get(esc.group)
        return group is not None and bool(group.experts)

    def answer(self, escalation_id: str, text: str, *, by: str | None = None, verify: bool = False) -> Escalation:
        """Record ``by``'s answer (see `_authorize_change` for who may replace one) and index it at once.

        ``verify`` marks it verified (the group's experts only, when experts are configured).  A replaced
        answer's text, author and time stay in the escalation's history (event ``answer_changed``).
        """
        if not isinstance(text, str):
            raise InvalidEscalationError("the answer must be text")
        text = clean_text(text)
        if not text:
            raise InvalidEscalationError("the answer is empty")
        if len(text) > 200_000:
            raise InvalidEscalationError("the answer is longer than 200,000 characters")
        esc = self.store.get(escalation_id)
        if verify:
            self._check_expert(esc, by)
        self.store.record_answer(escalation_id, text, by=by, verified=verify,
                                 authorize=self._authorize_change(by), notify=self._asker_notify())
        self.index_answer(escalation_id)
        self._deliver_now(escalation_id)
        return self.store.get(escalation_id, history=True)

    def review(self, escalation_id: str, *, verified: bool | None = None, accepted: bool | None = None,
               by: str | None = None) -> Escalation:
        esc = self.store.get(escalation_id)
        if verified is not None:
            self._check_expert(esc, by)
        self.store.review(escalation_id, verified=verified, accepted=accepted, by=by, notify=self._asker_notify())
        self.index_answer(escalation_id)
        self._deliver_now(escalation_id)
        return self.store.get(escalation_id, history=True)

    def answer_document(self, esc: Escalation, *, extra_questions: Sequence[str] = (),
                        outdated: bool = False) -> Document:
        """The index document of an answered escalation: title = question, text = answer."""
        if not esc.answered or not esc.answer:
            raise InvalidEscalationError(f"{esc.id} has no answer")
        questions = [q for q in extra_questions if not _same(q, esc.question)]
        group = self.groups.get(esc.group)
        return Document(
            id=answer_doc_id(esc.id), title=esc.question, text=esc.answer, kind="answer",
            url=self.cfg.escalation_url.replace("{id}", esc.id) if self.cfg.escalation_url else "",
            questions=tuple(dict.fromkeys(questions)), group=esc.group, source=SOURCE,
            asked=esc.created, updated=esc.answered_at, accepted=esc.accepted, verified=esc.verified,
            outdated=outdated, allowed_groups=group.answers_visible_to if group is not None else (),
        )

    def _add_with_wait(self, docs: list[Document], *, refit: bool = True) -> None:
        """Add to the index, waiting up to ``peers.index_wait`` for another writer to finish.

        ``refit=False`` when the caller (a source sync in a reindex or an import) refits once at its end.
        """
        with self._index_lock:
            self.kb.add(docs, refit=refit, lock_timeout=self.cfg.index_wait)

    def index_answer(self, escalation_id: str) -> bool:
        """Make the stored answer searchable now; False (answer kept, indexed later) if the index is busy."""
        with self._index_lock:
            esc = self.store.get(escalation_id)
            if not esc.answered:
                return False
            doc_id = answer_doc_id(esc.id)
            phrasings = [q for d, q in self.store.duplicates() if d == doc_id]
            doc = self.answer_document(esc, extra_questions=phrasings,
                                       outdated=self.store.outdated_marks().get(doc_id, False))
            try:
                self._add_with_wait([doc])
            except IndexLockedError:
                log.warning("index busy: answer of %s is stored and will be indexed by the next delivery run",
                            escalation_id)
                return False
            return self.store.mark_indexed(esc.id, doc_id, esc.revision)

    def index_pending(self) -> int:
        """Index every stored answer that is not searchable yet (after a crash or a busy index)."""
        done = 0
        for esc in self.store.unindexed():
            done += self.index_answer(esc.id)
        return done

    def close_duplicate(self, escalation_id: str, doc_id: str, *, by: str | None = None) -> Escalation:
        """Close as a duplicate of answer ``doc_id`` and add the asker's wording to its phrasings."""
        doc = self.kb.get(doc_id)
        if doc is None:
            raise NotFoundError(f"no document {doc_id!r} in the index")
        if doc.kind != "answer":
            raise InvalidEscalationError(f"{doc_id} is a page, not an answer; answer the question instead")
        # The asker's notice carries the earlier answer only when everyone may read it: the asker's
        # groups are not stored with the question, so a restricted answer is named by its id alone.
        earlier: dict[str, Any] = {"id": doc.id}
        if not doc.allowed_groups:
            earlier.update(title=doc.title, answer=doc.text, url=doc.url)
        esc = self.store.close_duplicate(escalation_id, doc_id, by=by,
                                         notify=self._asker_notify({"duplicate": earlier}))
        self._add_phrasing(doc, esc.question)
        self._deliver_now(escalation_id)
        return self.store.get(escalation_id, history=True)

    def close_unanswerable(self, escalation_id: str, *, by: str | None = None, reason: str = "") -> Escalation:
        """Close as unanswerable (nothing answers it, none will be written): only the group's experts
        may; the next rebuild learns that the question's best candidate was no answer."""
        esc = self.store.get(escalation_id)
        if not self.is_expert(esc, by):
            raise PermissionDeniedError(f"{by} is not an expert of {esc.group}; only experts close questions")
        self.store.close_unanswerable(escalation_id, by=by, reason=reason)
        return self.store.get(escalation_id, history=True)

    def _add_phrasing(self, doc: Document, question: str, *, refit: bool = True) -> bool:
        if any(_same(question, q) for q in (doc.title, *doc.questions)):
            return False
        self._add_with_wait([doc.replace(questions=(*doc.questions, question))], refit=refit)
        return True

    def mark_outdated(self, doc_id: str, *, outdated: bool = True, by: str | None = None) -> Document:
        doc = self.kb.get(doc_id)
        if doc is None:
            raise NotFoundError(f"no document {doc_id!r} in the index")
        self.store.set_outdated(doc_id, outdated, by=by)
        changed = doc.replace(outdated=outdated)
        self._add_with_wait([changed])
        return changed

    def reapply_marks(self, *, refit: bool = True) -> int:
        """Re-add duplicate phrasings and outdated marks that a re-import of another source dropped.

        ``refit=False``: the caller (a source sync) refits or rebuilds once when it is done.
        """
        fixed = 0
        for doc_id, question in self.store.duplicates():
            doc = self.kb.get(doc_id)
            if doc is not None:
                fixed += self._add_phrasing(doc, question, refit=refit)
        for doc_id, outdated in self.store.outdated_marks().items():
            doc = self.kb.get(doc_id)
            if doc is not None and doc.outdated != outdated:
                self._add_with_wait([doc.replace(outdated=outdated)], refit=refit)
                fixed += 1
        return fixed

    # -- similar questions, following, rerouting --------------------------------------------
    def may_see_escalation(self, esc: Escalation, *, user: str | None, groups: object) -> bool:
        """Whether a caller may be shown ``esc``: its asker, a member of its group, or (once answered)
        anyone who may see its answer document (`access.may_see` through `KnowledgeBase.get`)."""
        allowed = normalise_groups(groups)
        if allowed is None or (user is not None and esc.user == user) or esc.group in allowed:
            return True
        return esc.answered and self.kb.get(answer_doc_id(esc.id), user_groups=allowed) is not None

    def similar_questions(self, question: str, *, user: str | None = None, groups: object = ALL_GROUPS,
                          limit: int | None = None) -> list[dict[str, Any]]:
        """Open and answered escalations like ``question`` that the caller may see, most similar first.

        Why: the same question should not be escalated twice; the asker follows the open one or reads
        the answer instead.  Only escalations the caller may see (`may_see_escalation`) are compared
        at all, so hidden questions move neither the ranking nor the scores.  Similarity is TF-IDF
        cosine over word unigrams and bigrams, fitted on the visible candidates among the newest
        ``peers.similar_candidates``; below ``peers.similar_min_score`` nothing is offered.
        """
        question = self._check_question(question)
        limit = self.cfg.similar_limit if limit is None else max(0, int(limit))
        candidates = [e for e in self.store.recent(limit=self.cfg.similar_candidates)
                      if self.may_see_escalation(e, user=user, groups=groups)]
        if not candidates or limit == 0:
            return []
        return rank_similar(question, candidates, user=user, limit=limit, min_score=self.cfg.similar_min_score)

    def follow(self, escalation_id: str, *, user: str, groups: object = ALL_GROUPS) -> Escalation:
        """Add ``user`` to the followers of an open escalation they may see (a "+1"): from now on they
        get the asker's notices (answer, verification, duplicate, reroute)."""
        if not isinstance(user, str) or not user.strip():
            raise InvalidEscalationError("following needs a user")
        esc = self.store.get(escalation_id)
        if not self.may_see_escalation(esc, user=user, groups=groups):
            raise PermissionDeniedError("this question belongs to a group you are not in")
        allowed = normalise_groups(groups)
        esc, added = self.store.follow(escalation_id, user.strip(),
                                       groups=None if allowed is None else sorted(allowed))
        if added:
            log.info("%s follows %s", user, escalation_id)
        return self.store.get(escalation_id, history=True)

    def reroute(self, escalation_id: str, group: str, *, reason: str, by: str | None = None) -> Escalation:
        """Send an open escalation to another peer group, with a reason; the new group is notified like
        of a new question and the asker (and followers) hear where it went and why.

        Who may: the caller decides (the web API admits members and experts of the current group;
        ``by=None`` is the operator).  Routing learns from it: the answer document of a rerouted
        question carries the group that answered it, and the router is fitted from those groups.
        """
        if not isinstance(reason, str) or not clean_text(reason).strip():
            raise InvalidEscalationError("a reroute needs a reason (it is shown to the asker and the new group)")
        reason = clean_text(reason).strip()
        if len(reason) > 2000:
            raise InvalidEscalationError("the reason is longer than 2,000 characters")
        target = self.groups.get(group) if isinstance(group, str) else None
        if target is None:
            raise InvalidEscalationError(f"unknown group {group!r} (one of {', '.join(g.name for g in self.groups)})")

        def notify(before: Escalation, after: Escalation) -> list[NewNotification]:
            return reroute_notices(before, after, self.groups, self.cfg)

        seen = self.seen_for(self.store.get(escalation_id), target.name)
        esc = self.store.reroute(escalation_id, target.name, reason=reason, by=by, notify=notify, seen=seen)
        log.info("rerouted %s to %s (%s)", esc.id, esc.group, reason)
        self._deliver_now(escalation_id)
        return self.store.get(escalation_id, history=True)

    def seen_for(self, esc: Escalation, group: str) -> list[dict[str, Any]]:
        """``esc.seen`` cut to the documents every reader of ``group`` may see: what the question keeps
        when it moves there (the list was cut for the first group's readers when it was asked; its
        notices, reminders and views then name nothing the new group may not see)."""
        visible = self._visible_to(None, group)
        return [s for s in esc.seen if visible(str(s.get("id")))]

    # -- notifications ----------------------------------------------------------------------
    def deliver(self, *, limit: int = 500, now: float | None = None) -> DeliveryReport:
        """One tick: the SLA pass (`_sla`), then the outbox (first reminders, due notifications), then
        answers not yet searchable.  ``now`` replaces the clock for the SLA and the outbox (tests)."""
        sla = self.sla.run(now=now)
        report = self.outbox.deliver(limit=limit, now=now)
        report.sla = sla.to_dict()
        report.indexed = self.index_pending()
        return report
