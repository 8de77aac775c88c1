"""Subprocess entry point: serve one GGUF model with llama.cpp's native HTTP server.

Run as ``python -m icm_client.local._serve --model PATH --port N ...``; ``EmbeddedServer``
does that. The server runs in a child process rather than in the caller's process because
llama.cpp's threads cannot be stopped from Python: only a process can be ended cleanly and
for certain, and a crash in native code then cannot take the labeling run down with it.

Protocol with the parent: once the model is loaded and the socket is bound, the address
(``http://127.0.0.1:PORT``) is written to ``--ready-file`` by an atomic rename (``--port 0``
lets the OS pick a free port, so there is no race between choosing a port and binding it).
Not a stdout line: llama.cpp writes its log to the same file from native threads without
line buffering, and a line of ours could land in the middle of one of its lines.

The process then waits for SIGTERM or SIGINT, or for its parent to die (it polls
``os.getppid()``), so that a crashed test or CLI never leaves a server behind.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Sequence
from typing import Any

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_PARENT_POLL_S = 1.0
# A clean shutdown of the native server takes ~0.1 s; if it ever hangs (a request in
# flight, a native bug), the process still has to go away.
_SHUTDOWN_GRACE_S = 1.0
# llama.cpp's llama_flash_attn_type: -1 auto, 0 disabled, 1 enabled.
_FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}


#: llama.cpp's HTTP server gives each open connection a thread while it is kept alive; its
#: default (slots + 4) is fewer than the client's concurrent connections, and requests
#: beyond it waited seconds for a thread (measured: 8 concurrent short requests on 2 slots,
#: 350 ms per request instead of 50). Idle threads cost nothing but their stacks.
HTTP_THREADS = 128


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m icm_client.local._serve",
        description="Serve a GGUF model on an OpenAI-compatible /v1/completions endpoint.",
    )
    parser.add_argument("--model", required=True, help="path of the .gguf file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: let the OS pick a free port")
    parser.add_argument("--n-parallel", type=int, default=1, help="slots (concurrent sequences)")
    parser.add_argument("--ctx-per-slot", type=int, default=4096, help="context tokens per slot")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--threads-http",
        type=int,
        default=HTTP_THREADS,
        help="threads answering HTTP: one per open connection (keep-alive holds it)",
    )
    parser.add_argument(
        "--cache-ram-mib",
        type=int,
        default=2048,
        help="host-RAM prompt cache shared by all slots (MiB; 0 disables, -1 unlimited)",
    )
    parser.add_argument(
        "--swa-full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="full-size KV cache for sliding-window layers (prefix reuse below ~650 tokens)",
    )
    parser.add_argument("--n-batch", type=int, default=2048, help="logical batch (tokens)")
    parser.add_argument("--n-ubatch", type=int, default=512, help="physical batch (tokens)")
    parser.add_argument(
        "--flash-attn",
        choices=sorted(_FLASH_ATTN),
        default="auto",
        help="llama.cpp flash attention",
    )
    parser.add_argument("--alias", default=None, help="model id reported by /v1/models")
    parser.add_argument(
        "--ready-file", default=None, help="write the listening address here once serving"
    )
    parser.add_argument(
        "--native",
        default=None,
        metavar="LLAMA_SERVER",
        help="run this llama-server binary (native.py) instead of the prebuilt xllamacpp",
    )
    return parser.parse_args(argv)


def _params(args: argparse.Namespace) -> Any:
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    # llama.cpp's n_ctx is the total over all slots, not the per-request limit.
    p.n_ctx = args.ctx_per_slot * args.n_parallel
    p.n_parallel = args.n_parallel
    p.n_batch = args.n_batch
    p.n_ubatch = min(args.n_ubatch, args.n_batch)
    p.flash_attn_type = _FLASH_ATTN[args.flash_attn]
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.n_threads_http = args.threads_http
    p.hostnames = [args.host]
    p.port = args.port
    # Per-slot KV reuse of the longest common prefix: what makes ICM's shared prompts cheap.
    p.cache_prompt = True
    # Prompt states evicted from a slot are kept in RAM and restored into any slot, so a
    # request that lands on "the other" slot still finds its prefix.
    p.cache_ram_mib = args.cache_ram_mib
    # Gemma 3 attends over a 512-token sliding window in 5 of 6 layers. With a window-sized
    # KV cache for those layers, llama.cpp cannot reuse a cached prefix of a prompt shorter
    # than ~650 tokens (measured: 468-token prompt, 455 shared tokens -> 0 reused) and
    # re-processes it in full. A full-size cache costs ~15 KiB per context token (~150 MB at
    # n_ctx 8192, no measurable speed cost) and makes every shared prefix reusable.
    p.swa_full = args.swa_full
    p.endpoint_metrics = True
    p.endpoint_slots = True
    p.endpoint_props = True
    if args.alias:
        p.model_alias = {args.alias}
    return p


def _native_command(args: argparse.Namespace, port: int) -> list[str]:
    """``llama-server``'s command line for the same settings as ``_params``."""
    command = [args.native, "--model", args.model, "--host", args.host, "--port", str(port)]
    command += ["--ctx-size", str(args.ctx_per_slot * args.n_parallel)]
    command += ["--parallel", str(args.n_parallel), "--batch-size", str(args.n_batch)]
    command += ["--ubatch-size", str(min(args.n_ubatch, args.n_batch))]
    command += ["--threads", str(args.threads), "--threads-batch", str(args.threads)]
    command += ["--threads-http", str(args.threads_http)]
    command += ["--flash-attn", args.flash_attn, "--cache-ram", str(args.cache_ram_mib)]
    command += ["--metrics", "--slots", "--props", "--no-webui", "--cache-prompt"]
    if args.swa_full:
        command.append("--swa-full")
    if args.alias:
        command += ["--alias", args.alias]
    return command


def _free_port(host: str) -> int:
    """A port the OS considers free now. llama-server binds it a moment later; if another
    process takes it in between, llama-server exits and the parent reports its log."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(address + "/health", timeout=2.0) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _serve_native(args: argparse.Namespace, parent: int) -> int:
    """Run ``llama-server`` as our child, report its address once healthy, stop it with us."""
    port = _free_port(args.host)
    address = f"http://{args.host}:{port}"
    # The child inherits our stdout/stderr (the log file). ``_in_child`` runs between fork
    # and exec (safe here: this process has no other threads).
    child = subprocess.Popen(
        _native_command(args, port), stdin=subprocess.DEVNULL, preexec_fn=_in_child
    )
    ready = stopped = False
    try:
        while child.poll() is None:
            if not ready and _healthy(address):
                ready = True
                print(f"LISTENING {address}", flush=True)
                _write_ready(args.ready_file, address)
            stopped = signal.sigtimedwait(_STOP_SIGNALS, _PARENT_POLL_S / 4) is not None
            if stopped or os.getppid() != parent:
                stopped = True
                break
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(_SHUTDOWN_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    if not stopped:  # it exited on its own: at start-up (bad model, port taken) or later
        print(f"FAILED llama-server exited with code {child.returncode}", file=sys.stderr)
        return 1
    return 0


def _in_child() -> None:
    """Unblock the stop signals (a signal mask survives exec) and, on Linux, have the kernel
    kill llama-server if this process dies without stopping it (SIGKILL, a crash)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _write_ready(ready_file: str | None, address: str) -> None:
    if ready_file:
        tmp = f"{ready_file}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(address)
        os.replace(tmp, ready_file)


def _exit_after(seconds: float) -> None:
    """Hard-exit the process if the orderly shutdown has not finished in ``seconds``."""

    def fire() -> None:
        os._exit(0)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT or until the parent process goes away; return the exit code."""
    args = _parse(argv)
    parent = os.getppid()
    # Block the stop signals *before* llama.cpp starts its threads: they inherit the mask, so
    # the signal is delivered to the main thread's sigtimedwait() below at once, instead of to
    # a native thread where Python would only notice it at its next wake-up.
    # A handler (never run) also un-ignores SIGINT, which shells set to "ignore" for
    # background jobs: an ignored signal is discarded even while blocked.
    for signum in _STOP_SIGNALS:
        signal.signal(signum, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    if args.native:
        return _serve_native(args, parent)
    import xllamacpp

    try:
        server = xllamacpp.Server(_params(args))
    except RuntimeError as exc:  # bad model file, port in use...: the log above says which
        print(f"FAILED {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"LISTENING {server.listening_address}", flush=True)  # for humans reading the log
    _write_ready(args.ready_file, server.listening_address)

    while True:
        if signal.sigtimedwait(_STOP_SIGNALS, _PARENT_POLL_S) is not None:
            break
        if os.getppid() != parent:  # re-parented: whoever started us is gone
            break
    _exit_after(_SHUTDOWN_GRACE_S)
    del server  # stops the HTTP listener and the inference loop (~0.1 s)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
