"""What every benchmark's JSON records of the machine it ran on.

A wall time means little without the machine and its load, so each report
carries :func:`describe`'s answer.

    >>> sorted(describe())[:3]
    ['cpu_count', 'cpu_model', 'git']
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def package_version(name: str) -> str | None:
    """The installed version of ``name``, or None."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def describe(packages: tuple[str, ...] = ("ray", "numpy")) -> dict[str, Any]:
    """CPU model and count, platform, Python, load, git commit, and ``packages``' versions."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": list(os.getloadavg()),
        "git": git or None,
        **{name: package_version(name) for name in packages},
    }


def report_header(kind: str, script: str,
                  packages: tuple[str, ...] = ("ray", "numpy")) -> dict[str, Any]:
    """The fields every report starts with: its kind (which the results page
    renders it by), when, the command that runs ``script`` (its ``__file__``)
    again with this process's arguments, and :func:`describe`.

    >>> list(report_header("demo", "benchmarks/demo.py"))
    ['kind', 'date', 'command', 'machine']
    """
    script = Path(script).name
    return {
        "kind": kind,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join(["python", f"benchmarks/{script}", *sys.argv[1:]]),
        "machine": describe(packages),
    }
