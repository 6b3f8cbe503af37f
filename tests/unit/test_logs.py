"""Log lines name their pipeline and role, come readable or as JSON, and never show a password."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from streamlearn.cli import app
from streamlearn.logs import configure_logging

log = logging.getLogger("streamlearn.test")


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def on_pipeline_thread(name: str, work: object) -> None:
    thread = threading.Thread(target=work, name=f"pipeline-{name}")  # type: ignore[arg-type]
    thread.start()
    thread.join()


def test_readable_lines_name_the_pipeline(root_logging: None, capsys) -> None:
    configure_logging("INFO", "text")
    on_pipeline_thread("fraud", lambda: log.warning("slow batch"))
    log.info("started")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("WARNING [fraud] streamlearn.test: slow batch")
    assert lines[1].endswith("INFO [-] streamlearn.test: started")


def test_json_lines_carry_pipeline_role_level_and_message(root_logging: None, capsys) -> None:
    configure_logging("DEBUG", "json")
    on_pipeline_thread("churn", lambda: log.info("restored checkpoint v%d", 3))
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["pipeline"] == "churn" and record["role"] == "all"
    assert record["level"] == "INFO" and record["logger"] == "streamlearn.test"
    assert record["message"] == "restored checkpoint v3"
    assert record["ts"].endswith("Z")


def test_passwords_in_urls_are_masked_in_messages_and_tracebacks(
    root_logging: None, capsys
) -> None:
    configure_logging("INFO", "json")
    try:
        raise ConnectionError("cannot reach redis://app:hunter2@cache:6379/0")
    except ConnectionError:
        log.exception("connecting to %s failed", "redis://app:hunter2@cache:6379/0")
    out = capsys.readouterr().err
    assert "hunter2" not in out
    record = json.loads(out)
    assert "redis://app:***@cache:6379/0" in record["message"]
    assert "ConnectionError" in record["error"]


def test_configuring_again_switches_format_without_doubling_lines(
    root_logging: None, capsys
) -> None:
    configure_logging("INFO", "json")
    configure_logging("INFO", "text")
    log.warning("once")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("[-] streamlearn.test: once")


def test_an_unknown_log_format_is_refused(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("pipelines: []\n")
    result = CliRunner().invoke(app, ["run", str(config), "--log-format", "xml"])
    assert result.exit_code == 2
    assert "unknown log format 'xml'" in result.output


@pytest.mark.parametrize("command", ["run", "demo"])
def test_run_and_demo_offer_json_logs(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert "--log-format" in result.output


def test_a_process_with_a_role_names_it_on_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text", role="scorer")
    try:
        logging.getLogger("streamlearn.test").info("scoring")
    finally:
        configure_logging("INFO", "text")
    assert capsys.readouterr().err.rstrip().endswith("INFO [- scorer] streamlearn.test: scoring")
