"""Run a scenario script in a child process and read the one ``RESULT {json}`` line it prints.

Cluster and memory scenarios need a Ray of their own (a ``Cluster``, a small
object store), and the pytest session already runs one: so they run apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def run_scenario(script: str, name: str, timeout: float = 240) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, str(HERE / script), name], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=HERE)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    print(name, result)
    return result
