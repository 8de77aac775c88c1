"""Baselines to compare ICM against: the base model zero-shot, and the paper's "zero-shot
(chat)"."""

from __future__ import annotations

from .zero_shot import ChatModel, ZeroShotResult, zero_shot_argmax, zero_shot_labels

__all__ = ["ChatModel", "ZeroShotResult", "zero_shot_argmax", "zero_shot_labels"]
