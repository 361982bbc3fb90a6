"""Turn pydantic validation failures into config messages people can act on.

Every message names the full config key path, says what is accepted and shows the bad value:
``moontv:release.canary.weight: must be an integer 0..100, got 150``.

Validators that check relations between keys raise :func:`config_error`, which can point at a key
below the model being validated (``subpath``) and carry the offending value (``got``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Annotated, Any

import pydantic
from pydantic import BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

_CONFIG_ERROR = "moontv_config"
_NO_VALUE = object()


class ConfigError(Exception):
    """Invalid stack configuration; ``problems`` holds one message per bad key."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            "invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in self.problems)
        )


class ConfigModel(pydantic.BaseModel):
    """Base of every model of a ``moontv:`` config object: frozen, camelCase keys, no extras.

    Keys are accepted only in their camelCase spelling (``scaleDownInactive``), the one way the
    stack files write them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel)


def config_error(message: str, *subpath: str | int, got: Any = _NO_VALUE) -> PydanticCustomError:
    """An error for a validator to raise; ``subpath`` is relative to the model being validated."""
    ctx: dict[str, Any] = {"message": message, "subpath": list(subpath)}
    if got is not _NO_VALUE:
        ctx["got"] = got
    return PydanticCustomError(_CONFIG_ERROR, "{message}", ctx)


def int_range(minimum: int, maximum: int | None = None) -> BeforeValidator:
    """Validator for ``Annotated[int, int_range(0, 100)]``: ints and integer strings within the
    bounds, bools rejected, one message for wrong types and out-of-range values alike
    (``must be an integer 0..100``)."""
    accepted = f"an integer >= {minimum}" if maximum is None else f"an integer {minimum}..{maximum}"

    def check(value: Any) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value.strip())
        if number is None or number < minimum or (maximum is not None and number > maximum):
            raise PydanticCustomError("int_range", "must be {accepted}", {"accepted": accepted})
        return number

    return BeforeValidator(check)


def matching(pattern: str, accepted: str) -> BeforeValidator:
    """Validator for ``Annotated[str, matching(r"^…$", "a DNS label: …")]``: strings that match
    ``pattern``; anything else is refused with ``must be <accepted>`` (words, not the pattern)."""
    compiled = re.compile(pattern)

    def check(value: Any) -> str:
        if not isinstance(value, str) or compiled.search(value) is None:
            raise PydanticCustomError("text_format", "must be {accepted}", {"accepted": accepted})
        return value

    return BeforeValidator(check)


DnsLabel = Annotated[str, matching(
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    "a DNS label: at most 63 lower-case letters, digits and '-', "
    "starting and ending with a letter or digit",
)]
"""A Kubernetes object name or namespace (RFC 1123 label)."""


def format_errors(
    exc: pydantic.ValidationError,
    prefix: str,
    *,
    model: type[pydantic.BaseModel] | None = None,
    redact: Iterable[str] = (),
) -> list[str]:
    """One line per problem: ``<prefix><key path>: <what is accepted>, got <value>``.

    ``prefix`` is the config key the validated object lives under (``moontv:release``) or the
    namespace (``moontv:``). With ``model`` (the class that was validated) unknown keys list the
    accepted ones. Values at paths in ``redact`` (dotted, relative) are never shown.
    """
    hidden = set(redact)
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        ctx = error.get("ctx") or {}
        path = [str(part) for part in error["loc"]]
        has_value = error["type"] not in ("missing", "extra_forbidden")
        value = error.get("input")
        if error["type"] == _CONFIG_ERROR:
            path += [str(part) for part in ctx.get("subpath", [])]
            has_value = "got" in ctx
            value = ctx.get("got")
        key = _join(prefix, path)
        message = _describe(error, model, path)
        if has_value:
            shown = "<redacted>" if ".".join(path) in hidden else show(value)
            message = f"{message}, got {shown}"
        lines.append(f"{key}: {message}")
    return lines


def _join(prefix: str, path: list[str]) -> str:
    if not path:
        return prefix.rstrip(".")
    if not prefix or prefix.endswith((":", ".")):
        return prefix + ".".join(path)
    return prefix + "." + ".".join(path)


def _describe(error: Any, model: type[pydantic.BaseModel] | None, path: list[str]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == _CONFIG_ERROR:
        return str(ctx["message"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        accepted = _accepted_keys(model, path[:-1])
        return "unknown key" + (f"; accepted keys: {', '.join(accepted)}" if accepted else "")
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind in ("string_type", "string_unicode"):
        return "must be a string"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be an object"
    if kind in ("list_type", "tuple_type"):
        return "must be a list"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be an integer"
    if kind in ("float_type", "float_parsing"):
        return "must be a number"
    if kind == "string_pattern_mismatch":  # a constraint without words (see `matching`)
        return "is not in the accepted format"
    bounds = {
        "greater_than_equal": ">= {ge}",
        "greater_than": "> {gt}",
        "less_than_equal": "<= {le}",
        "less_than": "< {lt}",
        "string_too_short": "at least {min_length} characters",
        "string_too_long": "at most {max_length} characters",
    }
    if kind in bounds:
        return "must be " + bounds[kind].format(**ctx)
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message[:1].lower() + message[1:]


def _accepted_keys(model: type[pydantic.BaseModel] | None, path: list[str]) -> list[str]:
    """Aliases of the fields of the (nested) model at ``path``, or [] when it cannot be found."""
    current: Any = model
    for part in path:
        if not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
            return []
        current = next(
            (
                _model_in(f.annotation)
                for name, f in current.model_fields.items()
                if (f.alias or name) == part
            ),
            None,
        )
    if not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
        return []
    return [f.alias or name for name, f in current.model_fields.items()]


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside ``X``, ``X | None`` or ``Annotated[X, ...]``, else None."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def show(value: Any) -> str:
    """A config value as it appears in messages: JSON, shortened."""
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
