"""A run directory names what differs when it refuses another run, and the embedded model's
engine (prebuilt wheel or native build of the same weights) is not part of a run's identity."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fault_server import fault_server

from icm_client.cli import main
from icm_client.dataset import Example
from icm_client.errors import ConfigError
from icm_client.run import LabelConfig
from icm_client.runs.checkpoint import RunStore
from icm_client.runs.identity import RunIdentity, run_model
from icm_client.search.anneal import Checkpoint
from icm_client.tasks import get_task

PREBUILT = "openai-completions:gemma-3-270m-q8_0:top20:ids"
NATIVE = "openai-completions:gemma-3-270m-bf16-native:top20:ids"
TASK = get_task("cities")
EXAMPLES = [Example(f"e{i}", {"statement": f"Town{i} is in Land{i % 3}."}) for i in range(6)]


def identity(
    model: str, config: LabelConfig | None = None, examples: list[Example] = EXAMPLES
) -> RunIdentity:
    return RunIdentity.of(TASK, examples, (config or LabelConfig()).model_dump(), model)


def saved(tmp_path: Path, first: RunIdentity) -> Path:
    store = RunStore(tmp_path, first.fingerprint, identity=first)
    store.save(Checkpoint(3, {0: 1, 2: 0}, random.Random(0).getstate()))
    return tmp_path


def test_the_embedded_models_engine_is_not_part_of_the_run() -> None:
    assert run_model(PREBUILT) == run_model(NATIVE) != PREBUILT
    assert run_model("openai-completions:gemma-3-270m:top20:ids") == run_model(PREBUILT)
    # other models keep their whole name, format suffixes included
    for other in ("openai-completions:meta-llama/Llama-3.1-8B:top20", "x:my-model-bf16:top5"):
        assert run_model(other) == other
    assert identity(PREBUILT).fingerprint == identity(NATIVE).fingerprint


def test_a_run_started_on_the_prebuilt_engine_continues_on_the_native_one(tmp_path: Path) -> None:
    run_dir = saved(tmp_path, identity(PREBUILT))
    native = identity(NATIVE)
    checkpoint, _ = RunStore(run_dir, native.fingerprint, identity=native).load()
    assert checkpoint is not None and checkpoint.labels == {0: 1, 2: 0}


@pytest.mark.parametrize(
    ("other", "named"),
    [
        (identity(PREBUILT, LabelConfig(calibrate=True)), "the settings: calibrate true -> false"),
        (
            identity(PREBUILT, LabelConfig(strategy="bounded", context_size=8)),
            'strategy "bounded" -> "exact"',
        ),
        (identity("openai-completions:meta-llama/Llama-3.1-8B:top20"), "the model: "),
        (identity(PREBUILT, examples=EXAMPLES[:5]), "the input (its examples' ids or fields)"),
    ],
)
def test_a_different_run_is_refused_naming_what_differs(
    tmp_path: Path, other: RunIdentity, named: str
) -> None:
    run_dir = saved(tmp_path, other)
    now = identity(PREBUILT)
    with pytest.raises(ConfigError) as caught:
        RunStore(run_dir, now.fingerprint, identity=now).load()
    message = str(caught.value)
    assert "belongs to a different run" in message and named in message
    assert "--restart" in message


def test_a_task_change_on_the_same_input_names_the_task(tmp_path: Path) -> None:
    run_dir = saved(tmp_path, RunIdentity.of(get_task("truthfulqa"), [], {}, PREBUILT))
    now = RunIdentity.of(get_task("cities"), [], {}, PREBUILT)
    with pytest.raises(ConfigError, match=r"the task \(its template, label words or relation\)"):
        RunStore(run_dir, now.fingerprint, identity=now).load()


def test_the_readme_variant_without_calibrate_on_the_same_out_names_calibrate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's demo with --calibrate, then its variant without, on the same --out."""
    data = tmp_path / "claims.jsonl"
    rows = [{"id": f"c{i}", "question": f"Q{i // 4}?", "choice": f"A{i}."} for i in range(12)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with fault_server() as server:
        argv = ["label", str(data), "--task", "truthfulqa", "--out", str(tmp_path / "l.jsonl")]
        argv += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        argv += ["--steps", "12", "--quiet"]
        assert main([*argv, "--calibrate"]) == 0
        assert main(argv) != 0
    err = capsys.readouterr().err
    assert "belongs to a different run" in err and "calibrate true -> false" in err
    assert "--restart" in err and "Traceback" not in err
