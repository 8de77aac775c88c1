"""The settings of a user's own ``openai.AsyncOpenAI`` client, for ``connect(client=...)``.

A user who has an SDK client configured (base URL, key, organisation, project, default
headers, timeout) hands it over instead of repeating each setting. Only its settings are
read, through its public attributes: requests go through ``icm_client``'s own transport,
so the SDK's retries never run (the ``ScoringClient``'s ``Retry`` decides) and the SDK
need not be installed for anything else; nothing here imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError

_SDK_OWN = ("accept", "content-type", "user-agent", "authorization", "x-stainless")


@dataclass(frozen=True)
class SDKSettings:
    base_url: str
    api_key: str | None
    headers: dict[str, str]
    timeout: float | None


def sdk_settings(client: object) -> SDKSettings:
    """Base URL, key, headers (``OpenAI-Organization``, ``OpenAI-Project`` and the client's
    ``default_headers``, less the SDK's own) and timeout of an ``AsyncOpenAI`` (or anything
    with the same attributes); ``ConfigError`` for anything else."""
    base_url = getattr(client, "base_url", None)
    headers = getattr(client, "default_headers", None)
    if base_url is None or not isinstance(headers, dict):
        raise ConfigError(
            f"client= takes an openai.AsyncOpenAI client, got {type(client).__name__}",
            field="client",
        )
    key = getattr(client, "api_key", None)
    kept = {
        str(name): str(value)
        for name, value in headers.items()
        if isinstance(value, str) and not str(name).lower().startswith(_SDK_OWN)
    }
    return SDKSettings(
        base_url=str(base_url).rstrip("/"),
        api_key=key if isinstance(key, str) and key else None,
        headers=kept,
        timeout=_seconds(getattr(client, "timeout", None)),
    )


def _seconds(timeout: object) -> float | None:
    """A number of seconds, or an httpx ``Timeout``'s read timeout; None if neither."""
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        return float(timeout)
    read = getattr(timeout, "read", None)
    if isinstance(read, int | float) and not isinstance(read, bool) and read > 0:
        return float(read)
    return None
