"""The small stumbles of issue 18 (point 9) and the task-file reference (point 8)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from icm_client.cli import main
from icm_client.errors import ConfigError
from icm_client.export import preference_pairs
from icm_client.tasks import get_task
from icm_client.tasks.config import TaskConfig

ROOT = Path(__file__).parents[2]


def test_icm_help_speaks_to_users(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "sync edge" not in out and "anyio" not in out
    assert "Internal Coherence Maximization" in out and "task" in out


def test_readme_names_the_hf_extra_and_links_the_task_reference() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e '.[local,hf]'" in readme
    assert "(docs/tasks.md)" in readme and (ROOT / "docs" / "tasks.md").is_file()


def test_the_task_reference_covers_every_relation_kind_and_its_keys() -> None:
    doc = (ROOT / "docs" / "tasks.md").read_text()
    relation = TaskConfig.model_fields["relation"].annotation
    members = typing.get_args(typing.get_args(relation)[0])[0]  # Annotated[Union, ...] | None
    for config in typing.get_args(members):
        kind = typing.get_args(config.model_fields["kind"].annotation)[0]
        assert f'kind = "{kind}"' in doc or f'`kind = "{kind}"`' in doc, kind
        section = doc.split(f"`{kind}`", 1)[1]
        for key in config.model_fields:
            if key != "kind":
                assert re.search(rf"\| `{key}` \|", section), (kind, key)
    assert "content id" in doc and "icm export RUN --format labels" in doc


def test_the_preference_export_error_reads_as_a_sentence() -> None:
    with pytest.raises(ConfigError) as caught:
        preference_pairs(get_task("cities"), [])
    message = str(caught.value)
    assert message.startswith("preference pairs need a comparison task")
    assert "field 'format'" not in message
