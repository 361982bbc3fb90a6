"""The shell blocks of docs/runbooks/*.md, for the tests that run or check every command."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

RUNBOOKS = ROOT / "docs" / "runbooks"
TAGS = ("run", "cluster")
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    file: Path
    line: int
    language: str
    tag: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"

    def commands(self) -> list[list[str]]:
        """Each command as argv: comments dropped, ``\\`` continuations joined."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        commands = []
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
        return commands


def blocks(files: list[Path] | None = None) -> list[Block]:
    found = []
    for path in files or sorted(RUNBOOKS.glob("*.md")):
        text = path.read_text()
        for match in _FENCE.finditer(text):
            language, _, tag = match.group("info").strip().partition(" ")
            body = "\n".join(
                line[len(match.group("indent")) :] for line in match.group("body").splitlines()
            )
            found.append(
                Block(path, text[: match.start()].count("\n") + 1, language, tag.strip(), body)
            )
    return found


def shell_blocks(tag: str) -> list[Block]:
    return [b for b in blocks() if b.language in ("bash", "sh") and b.tag == tag]
