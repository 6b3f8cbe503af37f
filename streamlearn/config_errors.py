"""Turns pydantic's validation errors into lines a person can act on.

Each names the key as written in the YAML file (``pipelines[0].batching.min_size``), says what
was expected, and, when an environment variable set the value, names the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import ValidationError


def describe(exc: ValidationError, overridden: Mapping[str, str]) -> str:
    """One line per problem: the key's path, what was expected and what was given.

    ``overridden`` maps a key's path to the environment variable that set it.
    """
    lines = ["invalid configuration:"]
    for err in exc.errors():
        where = _location(err["loc"])
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and indentation)"
        elif err["type"] == "value_error":
            msg = _expected(msg)  # our own validators already say what they got
        else:
            msg = f"{_expected(msg)}, got {err.get('input')!r}"
        if where in overridden:
            msg += f" (from the environment variable {overridden[where]})"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


# Pipelines are told apart by their task; pydantic puts the task in the path, the file does not.
_TAGS = frozenset({"classification", "recommendation"})


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for i, part in enumerate(loc):
        if part in _TAGS and i and isinstance(loc[i - 1], int):
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            # pydantic reports the schema alias by its Python name.
            text += ("." if text else "") + ("schema" if part == "schema_" else str(part))
    return text or "(top level)"


def _expected(msg: str) -> str:
    msg = re.sub(r"^Value error, ", "", msg)
    msg = re.sub(r"^Input should be ", "expected ", msg)
    return msg
