"""Role processes for the roles benchmark: their configuration, start and stop, /metrics, CPU.

Each process is ``python -m streamlearn run CONFIG --role ROLE`` with the fraud example's
configuration pointed at the benchmark's broker, Redis, topic, group and Redis prefix, its own
metrics port and (for scorers and the learner) the variant's learn topic. CPU time is read from
``/proc/PID/stat`` (user + system, every thread), so the figures need Linux.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from connectors.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fraud" / "config.yaml"
PIPELINE = "fraud"
CHECKPOINT_KEY = "roles-benchmark-secret"  # models and checkpoints signed, as in production
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class Setup:
    """Where one variant's processes read and write.

    >>> Setup("b:1", "redis://r", "ev", "g1", "p1", "learn1").predictions_topic is None
    True
    """

    bootstrap: str
    redis_url: str
    topic: str
    group: str
    prefix: str  # Redis keys: predictions, lock, checkpoints, published models
    learn_topic: str
    predictions_topic: str | None = None


def role_config(setup: Setup, metrics_port: int) -> dict[str, Any]:
    """The fraud example's configuration pointed at ``setup``, serving /metrics on the port.

    >>> from streamlearn.config import parse_config
    >>> raw = role_config(Setup("b:1", "redis://r", "ev", "g1", "p1", "l1", "preds"), 9101)
    >>> p = parse_config(raw, env={}).pipelines[0]
    >>> p.source.group, p.learn_topic, p.outputs.predictions_topic, raw["metrics"]["port"]
    ('g1', 'l1', 'preds', 9101)
    """
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    config["kafka"] = {"bootstrap": setup.bootstrap, "connect_timeout_s": 30}
    config["redis"] = {"url": setup.redis_url, "prefix": setup.prefix}
    config["metrics"] = {"host": "127.0.0.1", "port": metrics_port}
    pipeline = config["pipelines"][0]
    pipeline["source"] = {**pipeline["source"], "topic": setup.topic, "group": setup.group}
    pipeline["roles"] = {"learn_topic": setup.learn_topic}
    outputs = {**pipeline["outputs"], "dead_letter_topic": f"{setup.topic}.dlq"}
    if setup.predictions_topic:
        outputs["predictions_topic"] = setup.predictions_topic
    pipeline["outputs"] = outputs
    return copy.deepcopy(config)


def stat_cpu(stat: str, ticks: int = _TICKS) -> float:
    """CPU seconds (utime + stime) in a ``/proc/PID/stat`` line.

    >>> stat_cpu("42 (python -m x) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0", ticks=100)
    2.0
    """
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / ticks


def cpu_seconds(pid: int) -> float:
    """CPU seconds the process ``pid`` has used so far, all its threads (0.0 once it is gone)."""
    try:
        return stat_cpu(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return 0.0


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition as ``{series: value}``.

    >>> parse_metrics('# HELP x\\nstreamlearn_learned_total{pipeline="fraud"} 12.0\\n')
    {'streamlearn_learned_total{pipeline="fraud"}': 12.0}
    """
    samples = (line.rpartition(" ") for line in text.splitlines() if line[:1] not in ("#", ""))
    return {series: float(value) for series, _, value in samples if series}


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s series that carry ``labels`` (0.0 when none).

    >>> s = {'a_total{pipeline="f",stage="x"}': 2.0, 'a_total{pipeline="f",stage="y"}': 3.0}
    >>> metric(s, "a_total"), metric(s, "a_total", stage="y"), metric(s, "b")
    (5.0, 3.0, 0.0)
    """
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return (
        sum(
            value
            for series, value in samples.items()
            if (series == name or series.startswith(name + "{"))
            and all(w in series for w in wanted)
        )
        + 0.0
    )


def child_env() -> dict[str, str]:
    """A role process's environment: this checkout importable, no service overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEARN_")}
    env["STREAMLEARN_CHECKPOINT_KEY"] = CHECKPOINT_KEY
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


class RoleProcess:
    """One ``streamlearn run --role ROLE`` process, logging to ``directory/NAME.log``."""

    def __init__(self, name: str, role: str, setup: Setup, directory: Path) -> None:
        self.name, self.role = name, role
        self.port = free_port()
        self.config_path = directory / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(role_config(setup, self.port)))
        self.log_path = directory / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (0 before start)."""
        return self._process.pid if self._process is not None else 0

    def start(self) -> RoleProcess:
        """Start the process; return self."""
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamlearn",
                    "run",
                    str(self.config_path),
                    "--role",
                    self.role,
                ],
                cwd=ROOT,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def cpu(self) -> float:
        """CPU seconds used so far."""
        return cpu_seconds(self.pid) if self.pid else 0.0

    def metrics(self) -> dict[str, float]:
        """Its /metrics samples ({} while it does not answer)."""
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                return parse_metrics(response.read().decode())
        except OSError:
            return {}

    def ready(self) -> bool:
        """Whether /readyz answers 200."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def check(self) -> None:
        """Raise if the process ended by itself."""
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self._process.returncode}):\n{self.tail()}")

    def terminate(self) -> None:
        """Send SIGTERM (it finishes its batch, checkpoints and leaves its group)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it lingers past ``timeout_s``."""
        self.terminate()
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(condition: Any, timeout_s: float, what: str, *procs: RoleProcess) -> None:
    """Poll ``condition`` every 50 ms; raise (with the processes' log tails) on timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for p in procs:
            p.check()
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}\n{tails}")
        time.sleep(0.05)


def stop_all(procs: list[RoleProcess]) -> None:
    """Stop every process, all at once."""
    for p in procs:
        p.terminate()
    for p in procs:
        p.stop()
