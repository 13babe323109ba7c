"""The one exception hierarchy of kbsearch: every error a caller can see derives from `KbsearchError`."""

from __future__ import annotations


class KbsearchError(Exception):
    """Base of every error kbsearch raises on purpose; the CLI prints it as one line, the API as 4xx JSON."""

    #: HTTP status the web layer answers with for this error.
    http_status: int = 400


class ConfigError(KbsearchError):
    """A setting, config file or environment variable has a value kbsearch cannot use."""


class InvalidQuestionError(KbsearchError):
    """A question cannot be searched: empty, too long, or otherwise unusable."""


class InvalidDocumentError(KbsearchError):
    """A document is missing a required field or has a field of the wrong type."""


class IndexNotFoundError(KbsearchError):
    """No index exists at the given path (and the caller did not ask to create one)."""

    http_status = 404


class IndexLockedError(KbsearchError):
    """Another writer holds the index; raised when waiting is disabled or the wait timed out."""

    http_status = 409


class IndexCorruptError(KbsearchError):
    """The index on disk cannot be read; the previous generation may still be usable."""

    http_status = 500


class NotFoundError(KbsearchError):
    """A document, escalation or other record with the given id does not exist."""

    http_status = 404


class InvalidEscalationError(KbsearchError):
    """An escalation, answer or attachment cannot be accepted as given (wrong state, bad input)."""


class IdempotencyKeyError(InvalidEscalationError):
    """An idempotency key used again for a different question (a client bug: the first one stands)."""

    http_status = 422


class PermissionDeniedError(KbsearchError):
    """The caller may not do this (e.g. verify an answer without being one of the group's experts)."""

    http_status = 403


class ClaimConflictError(KbsearchError):
    """Someone else holds the escalation; an expert can assign it, or its holder give it back."""

    http_status = 409


class DeliveryError(KbsearchError):
    """A notification channel could not deliver; ``permanent`` means retrying cannot help."""

    http_status = 502

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class StoreError(KbsearchError):
    """The database holding escalations, the outbox or the usage log cannot be used: unreachable,
    misconfigured (a bad URL), or at a schema version this kbsearch does not know."""

    http_status = 503


class StoreValueError(StoreError):
    """A value the database cannot hold (PostgreSQL text cannot contain a NUL character)."""

    http_status = 400


class SourceError(KbsearchError):
    """An import source cannot be read (missing file, malformed export, unreachable API)."""
