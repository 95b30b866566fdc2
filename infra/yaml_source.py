"""Load YAML while remembering where every value came from.

Validation errors must name the file, line and field. PyYAML's `safe_load` drops
positions, so we compose the node tree as well and walk it along the error's path
(pydantic's `loc`) to find the line. Nothing in PyYAML or pydantic does this join.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(Exception):
    """A config file is wrong; the message says where and what to do."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class YamlDocument:
    path: Path
    data: Any
    root: yaml.Node | None

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node along `loc` that exists."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for key in loc:
            if isinstance(node, yaml.MappingNode):
                found = next((v for k, v in node.value if k.value == str(key)), None)
                if found is None:
                    # The key itself is the problem (unknown/extra): point at it.
                    key_node = next((k for k, _ in node.value if k.value == str(key)), None)
                    return key_node.start_mark.line + 1 if key_node is not None else line
                node = found
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
                if key >= len(node.value):
                    return line
                node = node.value[key]
            else:
                return line
            line = node.start_mark.line + 1
        return line

    def where(self, loc: Sequence[str | int]) -> str:
        field = format_loc(loc)
        line = self.line_of(loc)
        place = f"{self.path}:{line}" if line else str(self.path)
        return f"{place}: {field}" if field else place


def format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(path: Path) -> YamlDocument:
    if not path.is_file():
        raise ConfigError([f"{path}: file not found"])
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{path}{line}: not valid YAML: {exc}"]) from None
    return YamlDocument(path=path, data=data, root=root)


def validation_problems(doc: YamlDocument, exc: ValidationError) -> list[str]:
    """Turn pydantic's errors into `file:line: field: problem` lines."""
    problems = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(f"{doc.where(loc)}: {msg}")
    return problems


def validate_document(doc: YamlDocument, model: type[Model], not_a_mapping: str) -> Model:
    """`doc` validated as `model`, or ConfigError naming file, line and field of every
    problem; `not_a_mapping` says what the file must hold when it is not a mapping."""
    if not isinstance(doc.data, dict):
        raise ConfigError([f"{doc.path}: {not_a_mapping}"])
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(doc, exc)) from None
