"""The progress bar of ``icm label`` and ``icm eval`` (``icm_client.progress``)."""

from __future__ import annotations

from ..progress import progress_bar, step_reporter

__all__ = ["progress_bar", "step_reporter"]
