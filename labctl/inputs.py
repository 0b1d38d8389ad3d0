"""Untrusted input at the edges: what every request body, path and query must be before labctl looks at it.

PostgreSQL refuses NUL characters in text (SQLite stores them), Python's JSON parser follows nesting as deep as the
sender likes and accepts ``NaN`` and ``Infinity``; each of these would otherwise surface deep inside as a 500. So the
edge rejects them, with a :class:`UnsafeInput` whose message says what was wrong, before any handler runs:

- no NUL character (U+0000) in any string, key or value;
- JSON nested at most :data:`MAX_DEPTH` levels;
- only standard JSON numbers (no ``NaN``, ``Infinity``; integers of at most 4300 digits, Python's own limit).

Pure functions with no labctl imports: the API and the inbound webhook verifier both use them.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32
NUL = "\x00"


class UnsafeInput(ValueError):
    """Input refused at the edge; the message is meant for the sender."""


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON from an untrusted sender, or raise :class:`UnsafeInput` saying why it is refused."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise UnsafeInput("the body is not UTF-8 text") from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise UnsafeInput(f"the JSON body is nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise UnsafeInput(f"the body is not JSON: {exc}") from None
    except ValueError as exc:  # an integer beyond Python's digit limit, or a constant refused above
        raise UnsafeInput(f"the JSON body has a value labctl does not accept: {exc}") from None
    check_value(value, max_depth=max_depth)
    return value


def check_value(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`UnsafeInput` when a parsed JSON value is too deep or carries a NUL character."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise UnsafeInput(f"the JSON body is nested deeper than {max_depth} levels")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str):
                    check_text(key, where="a JSON key")
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            check_text(item, where="a JSON string")


def check_text(text: str, *, where: str) -> None:
    if NUL in text:
        raise UnsafeInput(f"{where} contains a NUL character (U+0000), which labctl does not accept")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
