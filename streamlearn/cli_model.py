"""``streamlearn model``: list, roll back, export and import a pipeline's model checkpoints.

A rollback or import is filed as a request in Redis; the running processor adopts it between
batches (within about a second) and reads again from that checkpoint's offsets, or the next
start does. Nothing here writes a checkpoint version itself, so it never races the processor.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from streamlearn.checkpoint import Checkpoint, Checkpointer, CheckpointRefused
from streamlearn.config import checkpoint_key, load_config, service_defaults
from streamlearn.errors import ConfigError

model_app = typer.Typer(help="List, roll back, export and import model checkpoints.")
console = Console(stderr=True, soft_wrap=True)
output = Console(soft_wrap=True)

FILE_FORMAT = "streamlearn-checkpoint/1"

PipelineName = Annotated[str, typer.Argument(help="Pipeline name, e.g. fraud.")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Read the Redis URL and prefix from this file.")
]
RedisOption = Annotated[str | None, typer.Option(help="Redis URL (default: from env).")]
PrefixOption = Annotated[str | None, typer.Option(help="Key prefix (default: sl).")]


def _store(pipeline: str, config: Path | None, redis_url: str | None, prefix: str | None) -> Any:
    from connectors.redis_checkpoints import RedisCheckpointStore
    from connectors.redis_store import connect

    defaults = service_defaults()
    url, key_prefix = redis_url or defaults.redis_url, prefix or defaults.redis_prefix
    if config is not None:
        settings = load_config(config)
        settings.pipeline(pipeline)  # a typo in the name is an error, not an empty list
        url, key_prefix = redis_url or settings.redis.url, prefix or settings.redis.prefix
    return RedisCheckpointStore(connect(url, timeout_s=5), key_prefix, pipeline)


def _verifier(store: Any) -> Checkpointer:
    # Verification only: no model is loaded here, so state callbacks are never called.
    return Checkpointer(store, dict, lambda state: None, interval_s=0, key=checkpoint_key())


def _entry(store: Any, version: int) -> dict[str, Any]:
    verifier = _verifier(store)
    try:
        checkpoint = verifier.verified(store.load(version))
    except CheckpointRefused as exc:
        return {"version": version, "refused": str(exc)}
    meta = checkpoint.meta()
    meta["signature"] = _signature_state(checkpoint, verifier.key)
    meta["state_bytes"] = len(checkpoint.state)
    return meta


def _signature_state(checkpoint: Checkpoint, key: bytes | None) -> str:
    if not checkpoint.signature:
        return "unsigned"
    return "valid" if key is not None else "not checked (no key)"


@model_app.command("list")
def list_versions(
    pipeline: PipelineName,
    json: Annotated[bool, typer.Option("--json", help="Print JSON objects.")] = False,
    config: ConfigOption = None,
    redis_url: RedisOption = None,
    prefix: PrefixOption = None,
) -> None:
    """List PIPELINE's stored checkpoints, newest first."""
    store = _store(pipeline, config, redis_url, prefix)
    entries = [_entry(store, v) for v in store.versions()]
    if json:
        typer.echo(orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode())
        return
    if not entries:
        console.print(f"no checkpoints for pipeline {pipeline!r}")
        return
    table = Table("version", "created (UTC)", "learned", "model", "score", "offsets", "signature")
    for e in entries:
        if "refused" in e:
            table.add_row(str(e["version"]), "", "", "", "", "", f"refused: {e['refused']}")
            continue
        table.add_row(
            str(e["version"]),
            _utc(e["created"]),
            str(e["learned"]),
            str(e["model_version"]),
            " ".join(f"{k}={v:.3f}" for k, v in e["score"].items()),
            " ".join(f"{o['topic']}/{o['partition']}:{o['offset']}" for o in e["offsets"]),
            e["signature"],
        )
    output.print(table)


@model_app.command()
def rollback(
    pipeline: PipelineName,
    version: Annotated[int, typer.Argument(help="The checkpoint version to go back to.")],
    config: ConfigOption = None,
    redis_url: RedisOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Make PIPELINE serve checkpoint VERSION again, re-reading from its offsets."""
    store = _store(pipeline, config, redis_url, prefix)
    if version not in store.versions():
        kept = ", ".join(map(str, store.versions())) or "none"
        raise ConfigError(f"pipeline {pipeline!r} has no checkpoint v{version} (kept: {kept})")
    try:
        _verifier(store).verified(store.load(version))
    except CheckpointRefused as exc:
        raise ConfigError(f"checkpoint v{version} cannot be used: {exc}") from None
    store.ask({"action": "rollback", "version": str(version)})
    console.print(
        f"rollback of {pipeline!r} to v{version} requested: the running processor adopts it "
        "within a few seconds, or the next start does"
    )


@model_app.command("export")
def export(
    pipeline: PipelineName,
    args: Annotated[list[str], typer.Argument(help="[VERSION] FILE (default: the newest).")],
    config: ConfigOption = None,
    redis_url: RedisOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Write checkpoint VERSION (default: the newest) of PIPELINE to FILE."""
    if len(args) not in (1, 2) or (len(args) == 2 and not args[0].isdigit()):
        raise ConfigError("usage: streamlearn model export PIPELINE [VERSION] FILE")
    store = _store(pipeline, config, redis_url, prefix)
    versions = store.versions()
    version = int(args[0]) if len(args) == 2 else (versions[0] if versions else None)
    if version is None or version not in versions:
        raise ConfigError(f"pipeline {pipeline!r} has no checkpoint {version or ''}".rstrip())
    fields = store.load(version)
    checkpoint = Checkpoint.from_fields(fields)
    document = {
        "format": FILE_FORMAT,
        "pipeline": pipeline,
        "meta": checkpoint.meta_bytes().decode(),
        "signature": checkpoint.signature,
        "state": base64.b64encode(checkpoint.state).decode(),
    }
    Path(args[-1]).write_bytes(orjson.dumps(document))
    console.print(f"wrote v{version} of {pipeline!r} to {args[-1]}")


@model_app.command("import")
def import_(
    pipeline: PipelineName,
    file: Annotated[Path, typer.Argument(help="A file written by `model export`.")],
    config: ConfigOption = None,
    redis_url: RedisOption = None,
    prefix: PrefixOption = None,
) -> None:
    """Make PIPELINE serve the model in FILE, re-reading from the offsets it covers."""
    try:
        document = orjson.loads(file.read_bytes())
        if document.get("format") != FILE_FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FILE_FORMAT}")
        fields = {
            "meta": document["meta"].encode(),
            "state": base64.b64decode(document["state"]),
            "signature": document.get("signature", "").encode(),
        }
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ConfigError(f"{file} is not an exported streamlearn checkpoint: {exc}") from None
    store = _store(pipeline, config, redis_url, prefix)
    try:
        _verifier(store).verified(fields)
    except CheckpointRefused as exc:
        raise ConfigError(f"{file} cannot be imported: {exc}") from None
    store.ask({"action": "import", **fields})
    console.print(
        f"import into {pipeline!r} requested: the running processor adopts it within a few "
        "seconds, or the next start does"
    )


def _utc(epoch_s: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
