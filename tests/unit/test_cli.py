"""The command line: `check` on good and bad files, errors as one message and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from streamlearn import cli
from streamlearn.errors import ConfigError
from streamlearn.workloads import paced, task_events

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fraud" / "config.yaml"

PIPELINE = """\
pipelines:
  - name: fraud
    source: {{topic: transactions}}
    schema:
      features: {{amount: float, channel: category}}
    model: {{estimator: {estimator}}}
{extra}"""


def write_config(
    tmp_path: Path, estimator: str = "sklearn.linear_model.SGDClassifier", extra: str = ""
) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(PIPELINE.format(estimator=estimator, extra=extra), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def no_streamlearn_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("STREAMLEARN_"):
            monkeypatch.delenv(var)


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m streamlearn ARGS`` as a user runs it: main()'s error handling included."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STREAMLEARN_") and k not in ("COLUMNS", "LINES")
    }
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "streamlearn", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ")
    return lines


# --- check -----------------------------------------------------------------------------------


def test_check_accepts_the_example() -> None:
    result = CliRunner().invoke(cli.app, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console may wrap long lines
    assert "ok pipeline fraud: topic transactions, 8 features" in text
    assert "sklearn.linear_model.SGDClassifier" in text


def test_check_reports_every_pipeline(tmp_path: Path) -> None:
    path = write_config(tmp_path, estimator="river.linear_model.LogisticRegression")
    text = path.read_text(encoding="utf-8")
    second = text.split("\n", 1)[1].replace("name: fraud", "name: churn")
    path.write_text(text + second, encoding="utf-8")
    result = CliRunner().invoke(cli.app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "ok pipeline fraud" in text
    assert "ok pipeline churn" in text


def test_check_raises_config_error_in_process(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="    batching: {min_size: 0}\n")
    result = CliRunner().invoke(cli.app, ["check", str(path)])
    assert isinstance(result.exception, ConfigError)
    assert "pipelines[0].batching.min_size" in str(result.exception)


def test_bad_config_exits_2_with_the_key_and_no_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="    batching: {min_size: 0}\n")
    lines = assert_clean_error(run_module("check", str(path)))
    assert lines == [
        "error: invalid configuration:",
        "  pipelines[0].batching.min_size: expected greater than or equal to 1, got 0",
    ]


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    lines = assert_clean_error(run_module("check", str(tmp_path / "nope.yaml")))
    assert lines[0].startswith("error: configuration file not found: ")


def test_bad_estimator_exits_2_through_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In process (the model libraries are already imported): main() turns ModelError into 2.
    path = write_config(tmp_path, estimator="sklearn.svm.SVC")
    monkeypatch.setattr(sys, "argv", ["streamlearn", "check", str(path)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: SVC has no partial_fit")


def test_error_text_is_not_read_as_markup(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="    '[/x]': 1\n")
    lines = assert_clean_error(run_module("check", str(path)))
    assert "pipelines[0].[/x]: unknown key" in "\n".join(lines)


def test_a_long_error_line_is_not_wrapped(tmp_path: Path) -> None:
    long_name = "channel_" + "x" * 120
    path = write_config(tmp_path, extra=f"    batching: {{min_size: 10, {long_name}: 5}}\n")
    lines = assert_clean_error(run_module("check", str(path)))
    assert f"  pipelines[0].batching.{long_name}: unknown key" in "\n".join(lines), lines


# --- generate's building blocks --------------------------------------------------------------


def test_paced_without_a_rate_sends_full_chunks() -> None:
    assert list(paced(1200, None)) == [500, 500, 200]
    assert list(paced(0, None)) == []


def test_paced_with_a_rate_sends_small_chunks_adding_up() -> None:
    # 100 chunks a second: at 200,000 events/s each chunk is 2,000, capped at `chunk`.
    assert list(paced(1000, 200_000.0, chunk=300)) == [300, 300, 300, 100]
    chunks = list(paced(25, 1000.0))
    assert chunks == [10, 10, 5]


def without_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Event time starts at the wall clock; everything else follows from the seed.
    return [{k: v for k, v in e.items() if k != "ts"} for e in events]


def test_task_events_are_reproducible() -> None:
    first = list(task_events("fraud", seed=4, drift_at=None)(50))
    again = list(task_events("fraud", seed=4, drift_at=None)(50))
    other = list(task_events("fraud", seed=5, drift_at=None)(50))
    assert without_time(first) == without_time(again)
    assert without_time(first) != without_time(other)
    assert {"event_id", "entity_id", "ts", "amount", "channel", "mcc", "is_fraud"} <= set(first[0])


def test_task_events_continue_the_stream() -> None:
    factory = task_events("fraud", seed=4, drift_at=None)
    ids = [e["event_id"] for e in factory(3)] + [e["event_id"] for e in factory(3)]
    assert len(set(ids)) == 6


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'churn'; known tasks: fraud"):
        task_events("churn", seed=0, drift_at=None)


def test_run_refuses_an_unknown_role_naming_the_choices() -> None:
    result = CliRunner().invoke(cli.app, ["run", str(EXAMPLE), "--role", "trainer"])
    assert result.exit_code == 2
    assert "all, scorer, learner" in result.output and "trainer" in result.output
