"""The affinity of a prompt: which prompts should meet the same replica's prefix cache.

``Routing`` keys its choice of replica by a prompt's first ``DEFAULT_AFFINITY_CHARS``
characters; a host that routes replicas itself takes the same key as a header (Fireworks'
``x-session-affinity``), as a short digest, so that no prompt text goes into a header.
"""

from __future__ import annotations

import hashlib

DEFAULT_AFFINITY_CHARS = 512
"""About 128 tokens: the first few demonstrations of an ICM prompt."""


def affinity_digest(prompt: str, chars: int = DEFAULT_AFFINITY_CHARS) -> str:
    """A 16-hex-digit digest of the prompt's first ``chars`` characters."""
    return hashlib.sha256(prompt[:chars].encode("utf-8")).hexdigest()[:16]
