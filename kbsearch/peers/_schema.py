"""The peer store's tables (`store.SqlStore`) as versioned migrations, written once for SQLite and
PostgreSQL (`kbsearch.storage.sql.render` turns ``{serial}``, ``{real}`` and ``{blob}`` into each
dialect's types).  Version 1 is the schema of the SQLite files written before versions were kept
(``CREATE ... IF NOT EXISTS``), so such a file is adopted as it is.  A change is a new entry at the end:
never edit a released one.
"""

from __future__ import annotations

from ._claims import CLAIMS_SCHEMA

#: Name of the peer store's row in ``schema_version``.
COMPONENT = "peers"

_V1 = """
CREATE TABLE IF NOT EXISTS escalations (
    id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    user_name TEXT,
    group_name TEXT NOT NULL,
    status TEXT NOT NULL,
    created {real} NOT NULL,
    updated {real} NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    routing TEXT NOT NULL DEFAULT '{}',
    decision TEXT,
    seen TEXT NOT NULL DEFAULT '[]',
    answer TEXT,
    answered_by TEXT,
    answered_at {real},
    verified INTEGER NOT NULL DEFAULT 0,
    verified_by TEXT,
    accepted INTEGER NOT NULL DEFAULT 0,
    doc_id TEXT,
    duplicate_of TEXT,
    indexed_at {real},
    reminded_at {real},
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS escalations_group ON escalations (group_name, status);
CREATE INDEX IF NOT EXISTS escalations_status ON escalations (status, created);
CREATE TABLE IF NOT EXISTS events (
    id {serial},
    escalation_id TEXT NOT NULL REFERENCES escalations (id),
    at {real} NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_escalation ON events (escalation_id);
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY,
    escalation_id TEXT NOT NULL REFERENCES escalations (id),
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    data {blob} NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_escalation ON attachments (escalation_id);
CREATE TABLE IF NOT EXISTS outbox (
    id {serial},
    key TEXT NOT NULL UNIQUE,
    escalation_id TEXT NOT NULL REFERENCES escalations (id),
    group_name TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt {real} NOT NULL,
    claimed_until {real} NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created {real} NOT NULL,
    delivered_at {real}
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt);
CREATE TABLE IF NOT EXISTS followers (
    escalation_id TEXT NOT NULL REFERENCES escalations (id),
    user_name TEXT NOT NULL,
    at {real} NOT NULL,
    groups TEXT,
    PRIMARY KEY (escalation_id, user_name)
);
CREATE TABLE IF NOT EXISTS doc_marks (
    doc_id TEXT PRIMARY KEY,
    outdated INTEGER NOT NULL,
    at {real} NOT NULL,
    actor TEXT
);
"""


#: Version 2: idempotency keys of escalations (a retried request, from a phone that lost the answer,
#: returns the escalation the first one stored instead of storing it twice), per asker.
_V2 = """
CREATE TABLE escalation_keys (
    user_name TEXT NOT NULL,
    key TEXT NOT NULL,
    escalation_id TEXT NOT NULL REFERENCES escalations (id),
    fingerprint TEXT NOT NULL,
    created {real} NOT NULL,
    PRIMARY KEY (user_name, key)
);
"""

#: Version n is ``MIGRATIONS[n - 1]``.
MIGRATIONS: tuple[str, ...] = (_V1 + CLAIMS_SCHEMA, _V2)
