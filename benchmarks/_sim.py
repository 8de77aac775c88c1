"""The benchmarks' loopback model server, synthetic data and output helpers.

The server serves the stand-in models of ``icm_client.testing`` (``--model hash``: the
SHA-256 logprobs of ``tests/fault_server.py``, the same prompt gets the same answer; by
default ``belief_logprobs``: the search makes progress over it as over a real model, so
costs grow as in a real run), served
by a minimal asyncio HTTP/1.1 keep-alive server in a CHILD process: it does not share the
client's GIL, its CPU time is not the client's, and it answers thousands of requests a
second, so the benchmarks measure the client, not the server. ``--latency`` delays every
completion (not the server's CPU). ``--capacity`` serves at most that many completions at
once and queues the rest, like a GPU server with a fixed number of slots (default: no
limit, every request is served at once).

``usage.prompt_tokens`` is the toy tokenizer's count (words with their leading space,
punctuation marks, runs of whitespace): close to a BPE tokenizer's count on English prose.
``usage.prompt_tokens_details.cached_tokens`` is what an unbounded prefix cache of 16-token
blocks would have served (``PrefixCache``), as vLLM and OpenAI report it.

    # prints the port, serves until stdin closes
    python benchmarks/_sim.py [--latency 0.05] [--capacity 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icm_client.testing.protocol import belief_logprobs, completion_body, toy_tokenize
from icm_client.testing.protocol import hash_logprobs as model_logprobs

# -- the stand-in models (icm_client.testing) ------------------------------------------------

MODEL = "stand-in-1"
MODELS = {"belief": belief_logprobs, "hash": model_logprobs}


def completion(
    prompt: str, k: int, model: str = "belief", n_prompt: int | None = None, cached: int = 0
) -> dict[str, Any]:
    body = completion_body(MODEL, prompt, MODELS[model](prompt), k)
    if n_prompt is not None:
        body["usage"] = {
            "prompt_tokens": n_prompt,
            "completion_tokens": 1,
            "total_tokens": n_prompt + 1,
        }
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
    return body


def merge(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One answer to a list of prompts: a choice per prompt, by ``index``; usage summed."""
    choices = [a["choices"][0] | {"index": i} for i, a in enumerate(answers)]
    n = sum(a["usage"]["prompt_tokens"] for a in answers)
    cached = sum(a["usage"]["prompt_tokens_details"]["cached_tokens"] for a in answers)
    usage = {
        "prompt_tokens": n,
        "completion_tokens": len(answers),
        "total_tokens": n + len(answers),
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    return answers[0] | {"choices": choices, "usage": usage}


BLOCK = 16
"""Tokens per prefix-cache block, as vLLM's default block size."""


class PrefixCache:
    """What an unbounded automatic prefix cache (vLLM's) would serve: a prompt's leading full
    blocks of ``BLOCK`` tokens whose whole prefix was computed before. Nothing is evicted, so
    this is the most any prefix cache can save; a real one holds what fits its memory."""

    def __init__(self) -> None:
        self.blocks: set[int] = set()

    def cached(self, tokens: list[str]) -> int:
        """Tokens of ``tokens`` served from the cache; remembers all of its full blocks."""
        h, hits, hitting = 0, 0, True
        for start in range(0, len(tokens) - BLOCK + 1, BLOCK):
            h = hash((h, *tokens[start : start + BLOCK]))
            if hitting and h in self.blocks:
                hits += BLOCK
            else:
                hitting = False
                self.blocks.add(h)
        return hits


# -- the server (child process) -------------------------------------------------------------


class _Server:
    def __init__(self, latency: float, model: str, capacity: int | None = None) -> None:
        self.latency = latency
        self.model = model
        # A completion holds a slot for its answer and its latency; the rest wait their turn.
        self.slots = asyncio.Semaphore(capacity) if capacity is not None else None
        self.in_service = self.in_service_peak = self.queued = self.queued_peak = 0
        self.busy_s = 0.0  # slot-seconds spent serving completions
        self.cache = PrefixCache()
        self.cached_tokens = 0
        # "canned": one fixed answer, the request body unread, so that a server process
        # costs next to nothing per request and a client benchmark measures the client.
        self.canned = json.dumps(completion("canned", 20)).encode() if model == "canned" else b""
        self.canned_lists: dict[int, bytes] = {}
        self.completions = 0
        self.prompt_tokens = 0

    def route(self, method: bytes, path: bytes, body: bytes) -> tuple[int, object | bytes]:
        if method == b"GET" and path == b"/v1/models":
            return 200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
        if method == b"GET" and path == b"/stats":
            return 200, {
                "completions": self.completions,
                "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens,
                "cpu_s": time.process_time(),
                "in_service_peak": self.in_service_peak,
                "queued_peak": self.queued_peak,
                "busy_s": self.busy_s,
            }
        if method == b"POST" and path == b"/reset":  # a fresh server: empty prefix cache
            self.cache = PrefixCache()
            return 200, {}
        if method == b"POST" and path == b"/v1/completions" and self.canned:
            if b'"prompt":[' not in body and b'"prompt": [' not in body:  # one prompt
                self.completions += 1
                return 200, self.canned
            n = len(json.loads(body)["prompt"])  # a list of prompts: n canned choices
            self.completions += n
            if n not in self.canned_lists:
                answer = completion("canned", 20)
                self.canned_lists[n] = json.dumps(merge([answer] * n)).encode()
            return 200, self.canned_lists[n]
        if method == b"POST" and path == b"/v1/completions":
            payload = json.loads(body)
            prompt = payload.get("prompt")
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if (
                not isinstance(prompts, list)
                or not prompts
                or not all(isinstance(p, str) for p in prompts)
                or payload.get("model") != MODEL
            ):
                return 400, {"error": {"message": "bad prompt or model", "type": "invalid"}}
            k = int(payload.get("logprobs") or 1)
            answers = []
            for one in prompts:
                tokens = toy_tokenize(one)
                cached = self.cache.cached(tokens)
                answers.append(completion(one, k, self.model, len(tokens), cached))
                self.completions += 1
                self.prompt_tokens += len(tokens)
                self.cached_tokens += cached
            return 200, answers[0] if len(answers) == 1 else merge(answers)
        return 404, {"error": {"message": f"no route {path.decode()}", "type": "not_found"}}

    async def complete(self, method: bytes, path: bytes, body: bytes) -> tuple[int, object | bytes]:
        """A completion: its answer and its latency, in a slot when the capacity is bounded."""
        self.queued += 1
        self.queued_peak = max(self.queued_peak, self.queued)
        if self.slots is not None:
            await self.slots.acquire()
        self.queued -= 1
        self.in_service += 1
        self.in_service_peak = max(self.in_service_peak, self.in_service)
        start = time.perf_counter()
        try:
            status, payload = self.route(method, path, body)
            if self.latency:
                await asyncio.sleep(self.latency)
            return status, payload
        finally:
            self.busy_s += time.perf_counter() - start
            self.in_service -= 1
            if self.slots is not None:
                self.slots.release()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if path == b"/v1/completions":
                    status, payload = await self.complete(method, path, body)
                else:
                    status, payload = self.route(method, path, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (status, len(data), data)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _serve(latency: float, model: str, capacity: int | None) -> None:
    handler = _Server(latency, model, capacity).handle
    server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def _exit_when_parent_goes() -> None:
    sys.stdin.read()  # EOF: the parent closed our stdin or died
    os._exit(0)


class SimServer:
    """``with SimServer(latency=0.05) as sim: OpenAICompletions(sim.base_url, ...)``.

    ``model``: ``belief`` (default), ``hash`` (exactly the stand-in of the tests) or
    ``canned`` (one fixed answer to every completion: the cheapest server, for timing).
    ``capacity``: completions served at once (slots); the others queue. None: no limit.
    """

    def __init__(
        self, latency: float = 0.0, model: str = "belief", capacity: int | None = None
    ) -> None:
        if model not in (*MODELS, "canned"):
            raise ValueError(f"unknown stand-in model {model!r}")
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.latency = latency
        self.model = model
        self.capacity = capacity
        self.cache = PrefixCache()
        self.cached_tokens = 0
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (for its scheduler statistics)."""
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> SimServer:
        command = [sys.executable, __file__, "--latency", str(self.latency), "--model", self.model]
        if self.capacity is not None:
            command += ["--capacity", str(self.capacity)]
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def stats(self) -> dict[str, float]:
        """Completions answered, prompt tokens counted (and of those, served by the prefix
        cache) by the server, its CPU seconds, the most completions in service and waiting
        for a slot at once (peaks since start), and the slot-seconds spent serving."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
            data: dict[str, float] = json.loads(r.read())
        return data

    def reset(self) -> None:
        """Empty the server's prefix cache, as a fresh server's."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/reset", b"{}")
        with urllib.request.urlopen(request, timeout=10) as r:
            r.read()


# -- output ---------------------------------------------------------------------------------


def _value(text: str) -> Any:
    if text == "":
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def key_values(base: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``base`` updated by command-line ``KEY=VALUE`` items (``-`` in a key read as ``_``; an
    integer value as an int, an empty one as None, any other as text): settings of the
    "old" and "new" sides of a benchmark."""
    out = dict(base)
    for item in overrides:
        key, _, value = item.partition("=")
        out[key.replace("-", "_")] = _value(value)
    return out


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }


def write_json(path: Path, doc: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    print(f"wrote {path}")


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain text table, numbers right-aligned."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[k]) for r in cells)) for k, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--model", choices=[*sorted(MODELS), "canned"], default="belief")
    parser.add_argument("--capacity", type=int, help="completions served at once (default: all)")
    args = parser.parse_args()
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    asyncio.run(_serve(args.latency, args.model, args.capacity))
