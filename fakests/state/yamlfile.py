"""Reading YAML the one strict way: safe types only, a key given twice is an error, and every
problem is a ``ConfigError`` naming the source, the line and column, and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# How many values a document may hold once every alias is expanded. Aliases let 663 bytes stand for
# hundreds of millions of values (a "billion laughs"), which a rule body then sends in every response.
MAX_EXPANDED_VALUES = 100_000


def _expanded(node: yaml.Node, sizes: dict[int, int], visiting: set[int]) -> int:
    """The number of values ``node`` stands for with its aliases expanded (each node counted once)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in visiting:
        raise ConfigError("", "", "an alias refers to a value that contains it")
    visiting.add(key)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded(child, sizes, visiting) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded(k, sizes, visiting) + _expanded(v, sizes, visiting) for k, v in node.value)
    else:
        size = 1
    visiting.discard(key)
    sizes[key] = size
    return size


def parse_yaml(text: str, source: str) -> Any:
    """The document in ``text``; bad YAML is ``ConfigError(source, "line L, column C", reason)``, and so
    is one that expands past ``MAX_EXPANDED_VALUES`` values (aliases counted)."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded(node, {}, set())
        except ConfigError as exc:
            raise ConfigError(source, "", f"not valid here: {exc.reason}") from None
        if size > MAX_EXPANDED_VALUES:
            raise ConfigError(source, "", f"expands to {size:,} values with its aliases, more than the "
                                          f"{MAX_EXPANDED_VALUES:,} a document may hold")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise ConfigError(source, "", "not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(path: Path, source: str | None = None) -> Any:
    """The YAML document in the file at ``path``."""
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot be read: {exc}") from None
    return parse_yaml(text, source)
