"""Read a YAML or JSON document into plain Python data, remembering each value's line.

Pydantic validation errors and reference errors carry a path such as
``("steps", 2, "inputs", "project_path")``; ``Document.line_of`` turns it into the line the
user should look at.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowhost.problems import Problem, SpecError

PathKey = tuple[str | int, ...]

# libyaml's parser is about 10x faster; PyYAML falls back to pure Python without it.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the deepest known prefix of ``path``."""
        key = tuple(path)
        while key:
            line = self.lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return self.lines.get(())


def load_document(path: str | Path) -> Document:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem("file not found", file=file)]) from None
    except IsADirectoryError:
        raise SpecError([Problem("is a directory, not a workflow file", file=file)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(f"cannot read the file: {exc}", file=file)]) from None
    return parse_document(text, file)


def parse_document(text: str, file: str = "<spec>") -> Document:
    # Building the node tree allocates many small objects that all stay alive; pausing the
    # cyclic GC meanwhile keeps parsing linear in the size of the spec.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _parse(text, file)
    finally:
        if paused:
            gc.enable()


def _parse(text: str, file: str) -> Document:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([Problem("the file is empty", file=file, fix="see examples/")])
        doc = Document(file=file, data=None)
        problems: list[Problem] = []
        doc.data = _build(node, (), doc, loader, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = " ".join(part for part in (exc.context, exc.problem) if part)
        raise SpecError([Problem(f"malformed YAML/JSON: {detail}", file=file, line=line)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(f"malformed YAML/JSON: {exc}", file=file)]) from None
    finally:
        loader.dispose()
    if problems:
        raise SpecError(problems)
    return doc


def _build(
    node: yaml.Node, path: PathKey, doc: Document, loader: yaml.SafeLoader, problems: list[Problem]
) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            child = (*path, key)
            if key in result:
                problems.append(
                    Problem(
                        f"duplicate key '{key}'",
                        file=doc.file,
                        line=key_node.start_mark.line + 1,
                        fix="each key may appear once in a mapping",
                    )
                )
            doc.lines[child] = key_node.start_mark.line + 1
            result[key] = _build(value_node, child, doc, loader, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, index), doc, loader, problems)
            for index, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)
