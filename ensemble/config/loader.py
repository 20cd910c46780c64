"""YAML → strict pydantic model, with every error pointing at `file:line: key`."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _compose_checked(text: str, path: str) -> yaml.Node | None:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        line, problem = _explain_yaml_error(e, text)
        raise ConfigError(f"malformed YAML: {problem}", path=path, line=line) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", path=path) from None
    if node is not None:
        _check_duplicates(node, path)
    return node


def _explain_yaml_error(e: yaml.MarkedYAMLError, text: str) -> tuple[int | None, str]:
    """(line, problem and what to do) for a PyYAML syntax error, pointing where the user must look."""
    problem = (e.problem or e.context or "invalid YAML").strip()
    context = (e.context or "").strip()
    at_end = "end of stream" in problem or "<stream end>" in problem
    mark = e.problem_mark or e.context_mark
    if "found character '\\t'" in str(e) or ("\t" in text and "tab" in str(e).lower()):
        return _line(mark), "tab characters are not allowed for indentation in YAML; indent with spaces"
    if "quoted scalar" in context and at_end and e.context_mark is not None:
        return _line(e.context_mark), "unclosed quote: the quoted value on this line never ends; close it"
    if context.startswith("while parsing a flow") and at_end and e.context_mark is not None:
        return _line(e.context_mark), "unclosed [ or { on this line; close it with the matching bracket"
    detail = f"{problem} ({context})" if context and context != problem else problem
    return _line(mark), f"{detail}; fix the syntax here (indent with spaces, quote values with ': ' or '#')"


def _line(mark: yaml.Mark | None) -> int | None:
    return mark.line + 1 if mark is not None else None


def _check_duplicates(node: yaml.Node, path: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in seen:
                    line, key = k.start_mark.line + 1, k.value
                    raise ConfigError("duplicate key; remove one of the two", path=path, line=line, key=key)
                seen.add(k.value)
            _check_duplicates(v, path)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _check_duplicates(v, path)


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk a pydantic error location down the YAML node tree; the deepest node reached gives the line."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


def line_of(path: str | Path | None, loc: tuple[Any, ...]) -> int | None:
    """The line of `loc` (e.g. ("sections", 2, "expert")) in a YAML file, for errors found after loading."""
    if path is None:
        return None
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8-sig"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None
    return _node_line(root, loc)


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the last key of `loc` (for 'did you mean' suggestions)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        current = _first_model(field.annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _describe(err: dict[str, Any], model: type[BaseModel]) -> tuple[tuple[Any, ...], str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    if err["type"] == "extra_forbidden":
        owner = _model_at(model, loc)
        known = sorted(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        listed = f"; known keys: {', '.join(known)}" if known else ""
        hint = f"; did you mean '{close[0]}'?" if close else listed
        return loc, f"unknown key{hint}"
    if err["type"] == "missing":
        return loc, "required key is missing; add it"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if "input" in err and not isinstance(err["input"], dict | list):
        msg += f" (got {err['input']!r})"
    return loc, msg if ";" in msg else f"{msg}; fix this value"


def _first_error(errors: list[Any]) -> Any:
    """An unknown key explains the errors around it (a typo also leaves a required key missing): report it."""
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def parse_model(data: Any, model: type[M], *, path: str | Path, root: yaml.Node | None = None) -> M:
    """Validate already-parsed data; errors carry `path`, and a line when the YAML node tree is given."""
    path = str(path)
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise ConfigError(
            f"expected a mapping of keys at the top level, got {kind}; write `key: value` lines "
            "(`ensemble schema` lists the keys)",
            path=path,
            line=1,
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        loc, msg = _describe(_first_error(e.errors()), model)
        raise ConfigError(msg, path=path, line=_node_line(root, loc), key=format_loc(loc) or None) from None


def load_model(path: str | Path, model: type[M]) -> M:
    """Read a YAML file into `model`; every problem becomes one ConfigError naming file, line and key."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found; create it or pass the right path", path=p) from None
    except IsADirectoryError:
        raise ConfigError("is a directory; pass the path of a YAML file", path=p) from None
    except PermissionError:
        raise ConfigError("cannot read the file (permission denied); check its permissions", path=p) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start}); save the file as UTF-8", path=p) from None
    root = _compose_checked(text, str(p))
    data = yaml.load(text, Loader=_Loader) if root is not None else None
    return parse_model(data, model, path=p, root=root)
