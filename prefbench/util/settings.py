"""Settings as users write them: YAML files and ``--set`` values, read under one rule for numbers, and each
value checked against the type of its setting's default.

The rule for numbers: a value is what it looks like. PyYAML follows YAML 1.1, where a float needs a dot,
so ``lr: 1e-4`` would be the text ``"1e-4"`` there; YAML 1.2 and JSON read it as a number, as every user
means it, and so does :func:`parse_yaml`. A number in quotes is text, and a numeric setting refuses it
with a hint rather than guessing.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from prefbench.util.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` plus YAML 1.2's floats without a dot (``1e-4``, ``2E5``, ``1.0e5``)."""


class _Dumper(yaml.SafeDumper):
    """``yaml.safe_dump`` that quotes the text :class:`_Loader` would read as a number, so what prefbench
    writes reads back as it was."""


# YAML 1.2's floats that YAML 1.1 reads as text: an exponent without a dot or without a sign
_FLOAT_1_2 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+.0123456789"))
_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+.0123456789"))


def dump_yaml(data: Any) -> str:
    """``data`` as YAML that :func:`parse_yaml` reads back unchanged, keys in their order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - text.rfind("\n", 0, index)
    return f"line {line}, column {column}"


def parse_yaml(text: str, source: str, error: type[Exception] = ConfigError) -> Any:
    """The YAML document in ``text``; a syntax error raises ``error``, one line naming ``source``, the line and
    the column."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark, context = exc.problem_mark, exc.context_mark
        since = f" ({exc.context} at line {context.line + 1}, column {context.column + 1})" if context else ""
        raise error(f"{source}: line {mark.line + 1}, column {mark.column + 1}: not valid YAML: "
                    f"{exc.problem}{since}") from None
    except yaml.reader.ReaderError as exc:   # a character YAML does not allow; it has a position, not a mark
        raise error(f"{source}: {_position(text, exc.position)}: not valid YAML: {exc.reason} "
                    f"(U+{exc.character:04X})") from None
    except RecursionError:
        raise error(f"{source}: not valid YAML: nested too deeply") from None


def read_yaml(path: str | Path, error: type[Exception] = ConfigError) -> Any:
    """The YAML document in the file ``path`` (UTF-8); a missing, unreadable or invalid file raises ``error``
    naming it."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected a YAML file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return parse_yaml(text, str(path), error)


def _reads_as_number(value: Any) -> bool:
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


def quoted_number_hint(value: Any) -> str:
    """A hint for text that reads as a number (in YAML, a number written in quotes), or a list holding such
    text; else an empty string."""
    if any(_reads_as_number(v) for v in (value if isinstance(value, list) else [value])):
        return " (a number in quotes is text; remove the quotes)"
    return ""


def is_number(value: Any) -> bool:
    """An int or float with a finite float value (true and false are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:   # an int beyond any float
        return False


def typed(value: Any, default: Any, where: str, error: type[Exception] = ConfigError) -> Any:
    """``value`` checked against the type of its setting's ``default``: true or false for a bool, a whole
    number for an int (not 2.5, not true), any finite number for a float (an int becomes a float), text for
    a str, a mapping for a dict. A mismatch raises ``error`` naming ``where``."""
    if isinstance(default, bool):
        ok, wanted = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, wanted = is_number(value), "a finite number"
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok, wanted = isinstance(value, str), "text"
    else:
        wanted = "a mapping" if isinstance(default, dict) else type(default).__name__
        ok = isinstance(value, type(default))
    if not ok:
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        hint = quoted_number_hint(value) if numeric and isinstance(value, str) else ""
        raise error(f"{where}: expected {wanted}, got {value!r}{hint}")
    return value


def positive_int(text: str) -> int:
    """``text`` as a whole number of at least 1 (a count of workers, say), else ValueError."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value
