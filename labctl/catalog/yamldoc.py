"""YAML documents that keep their lines, so an error names the file, the line and the field.

A file is composed into a YAML node tree first (:func:`compose`): every node keeps the line it starts on, and the
data is then built from that tree. Repeated keys, which YAML itself would silently let the last one win, are reported
on their own line (:func:`duplicate_keys`). When the data fails validation, the field path of each error (a pydantic
``loc`` such as ``("budget", "thresholds", 1, "action")``) is followed through the same tree to the line of its key
(:func:`line_of`), and written for people (:func:`field_path`, or the plain :func:`dotted_path`).

Every problem is a :class:`Problem` (``file:line: field: message``); the callers (the lab loader, the price sheet)
raise them in their own error type, which :func:`compose` takes as a parameter.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Loc = tuple[int | str, ...]

FastLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it (it is in the wheels), else the pure-Python one: the same
documents, parsed several times faster. Used where lines are not needed (rendered templates)."""


def load_all(text: str) -> list[Any]:
    """Every non-empty YAML document of ``text``, parsed with :data:`FastLoader` (raises ``yaml.YAMLError``)."""
    return [doc for doc in yaml.load_all(text, Loader=FastLoader) if doc is not None]


@dataclass(frozen=True)
class Problem:
    """One thing wrong, where it is: ``file:line: field: message``."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


def field_path(loc: Loc) -> str:
    """``budget.thresholds.1.action``; a key with a dot or a slash in brackets (``cost_labels["example.com/team"]``),
    ``[key]`` parts left out, ``(top level)`` for an empty path."""
    parts: list[str] = []
    for part in loc:
        if part == "[key]":
            continue
        text = str(part)
        parts.append(f'["{text}"]' if isinstance(part, str) and ("." in text or "/" in text) else f".{text}")
    return "".join(parts).lstrip(".") or "(top level)"


def dotted_path(loc: Loc) -> str:
    """Every part as it is, joined by dots (``mig.A100.1g.10gb``); ``(top level)`` for an empty path."""
    return ".".join(str(part) for part in loc) or "(top level)"


def compose(text: str, source: str, error: Callable[[list[Problem]], Exception], *,
            loader: type[yaml.SafeLoader] = yaml.SafeLoader,
            path: Callable[[Loc], str] = field_path) -> tuple[Node, Any]:
    """The node tree (lines kept) of a single YAML document and the data built from it.

    An empty text, invalid YAML and repeated keys raise ``error`` with their problems (repeated keys named by
    ``path``, :func:`field_path` by default). ``loader`` is the loader class to use, a safe one.
    """
    composer = loader(text)
    try:
        root = composer.get_single_node()
        if root is None:
            raise error([Problem(source, None, None, "the file is empty")])
        duplicates = duplicate_keys(root, source, path=path)
        if duplicates:
            raise error(duplicates)
        return root, composer.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise error([Problem(source, line, None, f"not valid YAML: {exc.problem or exc}")]) from exc
    except yaml.YAMLError as exc:
        raise error([Problem(source, None, None, f"not valid YAML: {exc}")]) from exc
    finally:
        composer.dispose()


def duplicate_keys(node: Node, source: str, loc: Loc = (), *,
                   path: Callable[[Loc], str] = field_path) -> list[Problem]:
    """Every key written twice in one mapping below ``node`` (at ``loc``), on the line of its second writing."""
    problems: list[Problem] = []
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                problems.append(Problem(source, line, path((*loc, key_node.value)),
                                        f"appears twice (first on line {seen[key_node.value]})"))
            seen.setdefault(key_node.value, line)
            problems.extend(duplicate_keys(value_node, source, (*loc, key_node.value), path=path))
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            problems.extend(duplicate_keys(item, source, (*loc, index), path=path))
    return problems


def line_of(root: Node, loc: Loc, *, number_keys: bool = False) -> int | None:
    """The line of the key (or list item) that ``loc`` names; for a missing key, the line of its parent's key.

    None when a top-level key is missing (or ``loc`` is empty); ``[key]`` parts (pydantic's mark of an invalid
    dictionary key) are passed over. An int part names a list item; with ``number_keys`` it also names a mapping key
    written as a number (``{100: ...}``), else it stops at the mapping.
    """
    node = root
    line: int | None = None  # the line of the key (or list item) whose value ``node`` is
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(node, MappingNode) and (isinstance(part, str) or number_keys):
            match = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == str(part)), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line if line is not None else node.start_mark.line + 1
    return line


def unknown_field_message(loc: Loc, known: Sequence[str]) -> str:
    """The message of an unknown key at ``loc``: the closest of the ``known`` fields there, else all of them."""
    name = str(loc[-1]) if loc else "?"
    if not known:
        return f"unknown field {name!r}"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"unknown field {name!r} (did you mean {close[0]!r}?)"
    return f"unknown field {name!r}; the fields here are {', '.join(known)}"
