"""``HashBackend``: a stand-in model with no signal, for runs whose labels do not matter.

Its two label logprobs are read from the prompt's SHA-256, so the same prompt always gets the
same score; it records the prompts it was asked and counts its calls in ``usage``. It can be
told to fail for good after ``fail_after`` calls, or on prompts whose target (the last block)
is in ``fail_on``, to test what a run keeps when its backend goes away.
"""

from __future__ import annotations

import hashlib

from icm_client.backends.base import Backend, ScoreRequest, ScoreResult, Usage
from icm_client.errors import PermanentBackendError


class HashBackend(Backend):
    """Deterministic logprobs from the prompt's hash; optionally failing for good."""

    identity = "hash"

    def __init__(self, fail_after: int | None = None, fail_on: frozenset[str] = frozenset()):
        self.usage: Usage = Usage()
        self.prompts: list[str] = []
        self.fail_after = fail_after
        self.fail_on = fail_on  # targets (a prompt's last block) it fails on

    async def score(self, request: ScoreRequest) -> ScoreResult:
        if (self.fail_after is not None and self.usage.calls >= self.fail_after) or (
            request.prompt.rsplit("\n\n", 1)[-1] in self.fail_on
        ):
            raise PermanentBackendError("the stand-in went away", endpoint="hash")
        self.prompts.append(request.prompt)
        self.usage.calls += 1
        self.usage.prompt_tokens += len(request.prompt) // 4
        h = hashlib.sha256(request.prompt.encode()).digest()
        return ScoreResult((-h[0] / 64, -h[1] / 64), (False, False))

    async def aclose(self) -> None:
        pass
