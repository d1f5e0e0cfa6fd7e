"""The README's code runs as written: every ``python`` block in a fresh interpreter (its
own private Ray, as a new user would run it), every ``raymanager`` command line through
the real argument parser."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from raymanager.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(README.read_text()) if lang == language]


def test_the_readme_has_the_blocks_this_file_runs() -> None:
    assert len(blocks("python")) >= 2
    assert any("class Normalize" in code for code in blocks("python"))


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs(index: int, tmp_path: Path) -> None:
    code = blocks("python")[index]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, f"README python block {index}:\n{code}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr


def _command_lines() -> list[list[str]]:
    commands = []
    for code in blocks("bash"):
        for line in code.splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                words = shlex.split(part)
                if words and words[0] == "raymanager":
                    commands.append(words[1:])
    return commands


def test_every_raymanager_command_in_the_readme_parses() -> None:
    commands = _command_lines()
    assert {c[0] for c in commands} >= {"train", "evaluate", "info"}
    parser = build_parser()
    for words in commands:
        parser.parse_args(words)  # exits (fails the test) on an unknown flag
