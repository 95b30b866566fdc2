"""Render a template the way `ansible.builtin.template` does, without Ansible.

One renderer for everything that needs a role's or monitoring's output without
running a playbook: the monitoring templates (`monitoring.render`: tests, the
alert-name listing, `python -m monitoring render`) and the Docker target's config
files (`infra.docker.render`, which adds the lookups and context of a host). The
settings are Ansible's: `trim_blocks`, the trailing newline kept, undefined variables
are errors, and a `#jinja2:` first line may override Jinja's settings (the rule files
switch the variable delimiters to `[% %]` with it, leaving Prometheus' own
`{{ $labels.host }}` alone). The Ansible-only filters the templates use (`to_json`,
`regex_replace`, `combine`, …) are small shims here.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

#: Ansible's `#jinja2:` override line: `#jinja2:key:'value', key:'value'`.
_OVERRIDE_PREFIX = "#jinja2:"
_OVERRIDE_KEYS = frozenset({
    "block_start_string", "block_end_string", "variable_start_string",
    "variable_end_string", "comment_start_string", "comment_end_string", "trim_blocks",
    "lstrip_blocks", "keep_trailing_newline",
})


def split_overrides(text: str, source: Path) -> tuple[str, dict[str, Any]]:
    """Strip an Ansible `#jinja2:` first line and return its environment overrides.

    A malformed line is a ValueError naming the file and line.
    """
    if not text.startswith(_OVERRIDE_PREFIX):
        return text, {}
    eol = text.find("\n")
    if eol == -1:
        raise ValueError(f"{source}:1: the #jinja2: override line needs a newline after it")
    overrides: dict[str, Any] = {}
    for pair in text[len(_OVERRIDE_PREFIX):eol].split(","):
        key, sep, value = pair.partition(":")
        key = key.strip()
        if not sep or key not in _OVERRIDE_KEYS:
            raise ValueError(f"{source}:1: bad #jinja2: override {pair.strip()!r} (Ansible "
                             f"accepts {', '.join(sorted(_OVERRIDE_KEYS))})")
        overrides[key] = ast.literal_eval(value.strip())
    return text[eol + 1:], overrides


# --- Ansible filters used by the templates -----------------------------------------
def _to_json(value: Any, **kwargs: Any) -> str:
    return json.dumps(value, **kwargs)


def _to_nice_json(value: Any, indent: int = 4, sort_keys: bool = True, **kwargs: Any) -> str:
    return json.dumps(value, indent=indent, sort_keys=sort_keys, separators=(",", ": "),
                      **kwargs)


def _to_yaml(value: Any, **kwargs: Any) -> str:
    kwargs.setdefault("default_flow_style", None)
    return yaml.safe_dump(value, allow_unicode=True, **kwargs)


def _to_nice_yaml(value: Any, indent: int = 4, **kwargs: Any) -> str:
    return yaml.safe_dump(value, indent=indent, default_flow_style=False, allow_unicode=True,
                          sort_keys=kwargs.pop("sort_keys", True), **kwargs)


def _unique(values: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _regex_replace(value: Any, pattern: str = "", replacement: str = "",
                   ignorecase: bool = False, multiline: bool = False) -> str:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    return re.sub(pattern, replacement, str(value), flags=flags)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y", "t")
    return bool(value)


def _combine(*dicts: Mapping[str, Any], recursive: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in dicts:
        for key, value in item.items():
            if recursive and isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
                result[key] = _combine(result[key], value, recursive=True)
            else:
                result[key] = value
    return result


def _flatten(values: Iterable[Any], levels: int | None = None) -> list[Any]:
    flat: list[Any] = []
    for value in values:
        if isinstance(value, list | tuple) and (levels is None or levels > 0):
            flat.extend(_flatten(value, None if levels is None else levels - 1))
        else:
            flat.append(value)
    return flat


def _mandatory(value: Any, msg: str | None = None) -> Any:
    if isinstance(value, jinja2.Undefined):
        raise jinja2.UndefinedError(msg or "mandatory variable not defined")
    return value


ANSIBLE_FILTERS: dict[str, Callable[..., Any]] = {
    "to_json": _to_json,
    "to_nice_json": _to_nice_json,
    "to_yaml": _to_yaml,
    "to_nice_yaml": _to_nice_yaml,
    "unique": _unique,
    "regex_replace": _regex_replace,
    "bool": _bool,
    "combine": _combine,
    "flatten": _flatten,
    "mandatory": _mandatory,
    "basename": os.path.basename,
    "dirname": os.path.dirname,
    "quote": lambda value: shlex.quote(str(value)),
    "ternary": lambda value, yes, no, none=None: (none if value is None and none is not None
                                                 else (yes if value else no)),
    "dict2items": lambda d, key_name="key", value_name="value": [
        {key_name: k, value_name: v} for k, v in d.items()],
    "items2dict": lambda items, key_name="key", value_name="value": {
        i[key_name]: i[value_name] for i in items},
}


def ansible_environment(settings: Mapping[str, Any], loader_dir: Path) -> jinja2.Environment:
    """A Jinja environment with Ansible's defaults, `settings` (a `#jinja2:` line's
    overrides) on top, and the Ansible filter shims."""
    # Ansible's defaults: trim_blocks on, lstrip_blocks off, trailing newline kept.
    options: dict[str, Any] = {"trim_blocks": True, "keep_trailing_newline": True}
    options.update(settings)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(loader_dir)),
                             undefined=jinja2.StrictUndefined, autoescape=False, **options)
    env.filters.update(ANSIBLE_FILTERS)
    return env


def error_location(exc: jinja2.TemplateError, path: Path, overrides: Mapping[str, Any]) -> str:
    """`file:line` of a template error, counting the stripped `#jinja2:` line."""
    line = getattr(exc, "lineno", None) or _template_line(exc)
    return f"{path}:{line + (1 if overrides else 0)}" if line else str(path)


def _template_line(exc: BaseException) -> int | None:
    """The template line a render-time error came from (Jinja rewrites the traceback
    so that template frames carry template line numbers)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_template(path: Path, context: Mapping[str, Any]) -> str:
    """Render one template file like `ansible.builtin.template`; ValueError naming the
    file and line if it cannot be rendered."""
    text, overrides = split_overrides(path.read_text(encoding="utf-8"), path)
    env = ansible_environment(overrides, path.parent)
    try:
        return env.from_string(text).render(**context)
    except jinja2.TemplateError as exc:
        raise ValueError(f"{error_location(exc, path, overrides)}: {exc}") from exc
