"""GitHub Actions ``${{ }}`` expressions, evaluated the way the runner does for what the
project's workflows use; anything else (an unknown function, context or operator) raises
:class:`ExpressionError` instead of guessing.

Semantics followed (docs.github.com "Evaluate expressions in workflows and actions"):
``&&`` and ``||`` return one of their operands (``a && b || c`` is the usual ternary); falsy are
``false``, ``0``, ``''`` and ``null``; ``==`` compares strings case-insensitively and converts
operands of different types to numbers; a missing property is ``null``; the status functions
``success()``, ``failure()``, ``always()`` and ``cancelled()`` read the job's state.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The contexts a workflow may read.
CONTEXTS = frozenset(
    {
        "github",
        "env",
        "vars",
        "secrets",
        "matrix",
        "needs",
        "steps",
        "inputs",
        "job",
        "jobs",
        "runner",
        "strategy",
    }
)
_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|<=|>=|&&|\|\||[!<>(),.\[\]*])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
_EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.S)


class ExpressionError(Exception):
    """An expression the harness does not know: the workflow uses something it cannot judge."""


@dataclass
class Scope:
    """What an expression can read: the contexts and the job state."""

    contexts: dict[str, Any]
    status: str = "success"  # success, failure or cancelled: of the steps so far
    workspace: Path | None = None
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)


def truthy(value: Any) -> bool:
    return value not in (False, 0, "", None) and value == value  # NaN is falsy


def _number(value: Any) -> float:
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return float("nan")
    return float("nan")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) or a is None or b is None:
        if a is None or b is None:
            return a is None and b is None
        return bool(a == b)
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return a is b
    return _number(a) == _number(b)


def to_string(value: Any) -> str:
    """How the runner writes an expression's value into YAML text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2)
    return str(value)


class _Parser:
    def __init__(self, text: str, scope: Scope):
        self.text = text
        self.scope = scope
        self.tokens = self._tokens(text)
        self.at = 0

    def _tokens(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise ExpressionError(f"cannot read {text!r} at {text[pos:]!r}")
            kind = match.lastgroup
            assert kind is not None
            out.append((kind, match.group(kind)))
            pos = match.end()
        return out

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ExpressionError(f"expected {value or 'more'} in {self.text!r}")
        self.at += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            value = value if truthy(value) else right
        return value

    def and_(self) -> Any:
        value = self.compare()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.compare()
            value = right if truthy(value) else value
        return value

    def compare(self) -> Any:
        left = self.unary()
        token = self.peek()
        if token and token[0] == "op" and token[1] in ("==", "!=", "<", ">", "<=", ">="):
            self.take()
            right = self.unary()
            op = token[1]
            if op == "==":
                return _equal(left, right)
            if op == "!=":
                return not _equal(left, right)
            a, b = _number(left), _number(right)
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return left

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if (kind, value) == ("op", "("):
            inner = self.or_()
            self.take(")")
            return inner
        if kind != "name":
            raise ExpressionError(f"unexpected {value!r} in {self.text!r}")
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        if self.peek() == ("op", "("):
            return self.call(value)
        if value not in CONTEXTS:
            raise ExpressionError(f"unknown context {value!r} in {self.text!r}")
        current: Any = self.scope.contexts.get(value, {})
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name":
                    raise ExpressionError(f"unexpected {name!r} after '.' in {self.text!r}")
                key: Any = name
            else:
                key = self.or_()
                self.take("]")
            current = _index(current, key)
        return current

    def call(self, name: str) -> Any:
        self.take("(")
        args: list[Any] = []
        while self.peek() != ("op", ")"):
            args.append(self.or_())
            if self.peek() == ("op", ","):
                self.take()
        self.take(")")
        status = self.scope.status
        builtins: dict[str, Callable[..., Any]] = {
            "success": lambda: status == "success",
            "failure": lambda: status == "failure",
            "cancelled": lambda: status == "cancelled",
            "always": lambda: True,
            "format": _format,
            "contains": _contains,
            "startsWith": lambda a, b: to_string(a).lower().startswith(to_string(b).lower()),
            "endsWith": lambda a, b: to_string(a).lower().endswith(to_string(b).lower()),
            "toJSON": lambda a: json.dumps(a, indent=2),
            "fromJSON": lambda a: json.loads(a),
            "hashFiles": lambda *patterns: _hash_files(self.scope.workspace, patterns),
            **self.scope.functions,
        }
        if name not in builtins:
            raise ExpressionError(f"unknown function {name}() in {self.text!r}")
        return builtins[name](*args)


def _index(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        if isinstance(key, str):
            for k, v in value.items():  # property names are case-insensitive
                if isinstance(k, str) and k.lower() == key.lower():
                    return v
            return None
        return value.get(key)
    if isinstance(value, list) and isinstance(key, (int, float)):
        index = int(key)
        return value[index] if 0 <= index < len(value) else None
    return None


def _format(template: str, *args: Any) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        return to_string(args[int(match.group(1))])

    return re.sub(r"\{\{|\}\}|\{(\d+)\}", one, template)


def _contains(haystack: Any, needle: Any) -> bool:
    if isinstance(haystack, list):
        return any(_equal(item, needle) for item in haystack)
    return to_string(needle).lower() in to_string(haystack).lower()


def _hash_files(workspace: Path | None, patterns: tuple[str, ...]) -> str:
    if workspace is None:
        raise ExpressionError("hashFiles() needs a workspace")
    files = sorted({p for pattern in patterns for p in workspace.glob(pattern) if p.is_file()})
    if not files:
        return ""
    digest = hashlib.sha256()
    for path in files:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def evaluate(expression: str, scope: Scope) -> Any:
    """The value of one expression (the text inside ``${{ }}``, or a bare ``if:``)."""
    text = expression.strip()
    match = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
    if match:
        text = match.group(1)
    return _Parser(text, scope).parse()


def interpolate(text: Any, scope: Scope) -> Any:
    """``text`` with each ``${{ }}`` replaced by its value; a value that is one whole
    expression keeps its type (as the runner does for ``with:`` and ``if:``)."""
    if not isinstance(text, str):
        return text
    whole = re.fullmatch(r"\s*\$\{\{(.*?)\}\}\s*", text, re.S)
    if whole and "${{" not in whole.group(1):
        return evaluate(whole.group(1), scope)
    return _EMBEDDED.sub(lambda m: to_string(evaluate(m.group(1), scope)), text)


def condition(text: Any, scope: Scope) -> bool:
    """An ``if:``: without a status function it means ``success() && (text)``."""
    if text is None:
        return scope.status == "success"
    if isinstance(text, bool):
        return text and scope.status == "success"
    body = str(text).strip()
    match = re.fullmatch(r"\$\{\{(.*)\}\}", body, re.S)
    if match:
        body = match.group(1)
    value = truthy(evaluate(body, scope))
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", body):
        return value and scope.status == "success"
    return value
