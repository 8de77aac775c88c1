"""The error hierarchy.

Two questions decide what happens to an error, and the type answers both:

* Is it the user's input (``InputError``: a file, a field, a flag) or the outside world
  (``BackendError``)? The CLI exits with code 2 for the first kind.
* For backend errors: will trying again help? ``TransientBackendError`` is retried (with
  backoff, honouring ``retry_after``); ``PermanentBackendError`` stops the run at once.

Every message names *where* the problem is (file and line, field, endpoint), because a
labeling run may have cost hours by the time it fails.
"""

from __future__ import annotations


class ICMError(Exception):
    """Base class of every error this package raises on purpose. Its message passes the
    credential redaction (``redact.py``): a server that quotes the key back cannot leak it."""

    def __init__(self, message: str = "") -> None:
        from .redact import redact  # redact.py imports nothing of the package

        super().__init__(redact(str(message)))


class InputError(ICMError):
    """Bad user input: a dataset file, a task definition, an option.

    ``location`` names the file and line/record (``data.jsonl:17``) or the option, and
    ``field`` the offending field, so that the message can point at the exact spot.
    """

    def __init__(self, message: str, *, location: str | None = None, field: str | None = None):
        self.location = location
        self.field = field
        parts = [p for p in (location, f"field {field!r}" if field else None) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        #: The message without its location and field (redacted like the whole).
        self.message = str(self).removeprefix(f"{prefix}: ") if prefix else str(self)


class DataError(InputError):
    """A dataset file cannot be read or a record is invalid."""


class TaskError(InputError):
    """A task definition (built-in name, Python task or declarative config) is invalid."""


class ConfigError(InputError):
    """An option or an environment setting is invalid (URL, cache directory, budget...)."""


class BackendError(ICMError):
    """A scoring backend failed. ``endpoint`` says which one; ``status`` is the HTTP status."""

    def __init__(self, message: str, *, endpoint: str | None = None, status: int | None = None):
        self.endpoint = endpoint
        self.status = status
        where = f"{endpoint}: " if endpoint else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{where}{code}{message}")


class TransientBackendError(BackendError):
    """Worth retrying: rate limits, overload, 5xx, timeouts, dropped connections, garbled bodies."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        self.retry_after = retry_after
        super().__init__(message, endpoint=endpoint, status=status)


class NoAnswerError(TransientBackendError):
    """The server took the request but no complete answer came within the deadline: a busy
    server (worth retrying in a run), or one that never answers (a wrong port, a server
    still loading): ``preflight`` reports it at once instead of retrying."""


class PermanentBackendError(BackendError):
    """Retrying cannot help: bad request, bad key, unknown model, an endpoint that cannot score."""


class CapabilityError(PermanentBackendError):
    """The endpoint answers but cannot give what ICM needs (no logprobs, label not one token)."""


class ContextLengthError(PermanentBackendError):
    """The prompt does not fit the model's context window: shorter examples or a smaller
    context (``--strategy bounded``) can help, retrying cannot."""


class BudgetExhausted(ICMError):
    """The run's call or prompt-token budget is spent. The search stops and keeps its best
    state; it is an error only when the budget does not cover even the first evaluation."""
