"""The package's layering, read from its source: imports point down only.

- the engine (``raymanager.engine``) imports no Ray, no clock and nothing of
  the pool: it is checked by the simulator, without Ray;
- no module imports another in a cycle;
- only ``pool/``, the manager's modules (``manager``, ``startup``,
  ``streams``, ``object_store``), ``cli``, ``security`` and the shim
  ``ray_internals`` (the one module that reaches Ray's private APIs, see
  ``tests/test_ray_internals.py``) import ray;
- inside the pool, no module but the facade ``pool/actor_pool.py`` knows
  the public ``ActorPool``;
- no module of ``pool/`` is much longer than one job needs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "src" / "raymanager"
MAX_POOL_MODULE_LINES = 400
#: The modules that may import ray (and every module of pool/).
RAY_IMPORTERS = {"raymanager.manager", "raymanager.startup", "raymanager.streams",
                 "raymanager.object_store", "raymanager.cli", "raymanager.cli_info",
                 "raymanager.security",
                 "raymanager.ray_internals"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports when it runs (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            for field in ("body", "orelse", "handlers", "finalbody"):
                visit(getattr(node, field, []) or [])

    visit(tree.body)
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {
    name: {m for m in _runtime_imports(path) if m in MODULES and m != name}
    for name, path in MODULES.items()
}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("raymanager.engine")))
def test_the_engine_imports_no_ray_no_clock_and_no_pool(name: str) -> None:
    imports = _runtime_imports(MODULES[name])
    assert not {m for m in imports if m == "ray" or m.startswith("ray.")}
    assert not {m for m in imports if m.startswith("raymanager.pool")}
    assert "time" not in imports and "threading" not in imports


def test_only_the_pool_the_manager_the_cli_and_the_shim_import_ray() -> None:
    importers = {
        name for name, path in MODULES.items()
        if any(m == "ray" or m.startswith("ray.") for m in _runtime_imports(path))
    }
    allowed = {n for n in importers if n.startswith("raymanager.pool.") or n in RAY_IMPORTERS}
    assert importers - allowed == set()
    assert "raymanager.ray_internals" in importers  # the check sees imports


def test_no_module_imports_another_in_a_cycle() -> None:
    # Package __init__ files re-export lazily or from below: leave them out.
    graph = {n: {m for m in deps if MODULES[m].name != "__init__.py"}
             for n, deps in GRAPH.items() if MODULES[n].name != "__init__.py"}
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                walk(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)


def test_inside_the_pool_only_the_facade_knows_the_public_pool() -> None:
    # Runs, broadcasts, submissions and stats take the internal PoolAdapter;
    # the public class is for users (the manager, the training loop).
    public = {"raymanager.ActorPool", "raymanager.pool.ActorPool",
              "raymanager.pool.actor_pool", "raymanager.pool.actor_pool.ActorPool"}
    inside = {name for name in MODULES
              if name.startswith(("raymanager.pool.", "raymanager.engine"))}
    importers = {name for name in inside if _runtime_imports(MODULES[name]) & public}
    assert importers == set(), importers
    assert _runtime_imports(MODULES["raymanager.manager"]) & public  # the check sees imports


@pytest.mark.parametrize("path", sorted((PACKAGE / "pool").glob("*.py")), ids=lambda p: p.name)
def test_pool_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_POOL_MODULE_LINES


def test_the_adapter_and_the_simulator_drive_runs_with_the_same_loop() -> None:
    # One loop (engine/loop.py), hosted twice: neither host has a loop of its own.
    for host in ("raymanager.pool.dispatch", "raymanager.engine.simulator"):
        assert "raymanager.engine.loop.drive" in _runtime_imports(MODULES[host]), host
    assert not {m for m in _runtime_imports(MODULES["raymanager.engine.simulator"])
                if m.startswith("raymanager.pool") or m == "ray" or m.startswith("ray.")}


def test_the_pool_is_composed_not_a_chain_of_subclasses() -> None:
    # No class of pool/ inherits from another class of pool/: a reader finds
    # each mechanism in one place (the core, the Ray actors, the adapter, the
    # facade). The worker side's async host extends the sync one (it awaits
    # what the other calls): it runs in the actor, not in the driver's pool.
    trees = {name: ast.parse(path.read_text()) for name, path in MODULES.items()
             if name.startswith("raymanager.pool.")}
    classes = {node.name for tree in trees.values() for node in ast.walk(tree)
               if isinstance(node, ast.ClassDef)}
    chained = [f"{name}.{node.name}"
               for name, tree in trees.items() for node in ast.walk(tree)
               if isinstance(node, ast.ClassDef)
               and {ast.unparse(base) for base in node.bases} & classes
               and node.name != "AsyncActorHost"]
    assert chained == [], chained


def test_slot_states_change_only_through_the_lifecycle_table() -> None:
    # Every state change is Slot.move(event) (checked against TRANSITIONS);
    # no module assigns a slot's state itself.
    for name, path in MODULES.items():
        if name == "raymanager.engine.slots":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Attribute) and target.attr == "state" and \
                            "SlotState" in ast.unparse(node.value):
                        raise AssertionError(f"{name}:{node.lineno} assigns a slot's state")


def test_broadcasts_and_submissions_are_served_by_the_engine_s_loop() -> None:
    # Owners of one-off calls have no loop of their own either: engine/loop.serve
    # drives them, and every owner waits for its calls through adapter.wait_for.
    for owner in ("raymanager.pool.broadcast", "raymanager.pool.submit"):
        imports = _runtime_imports(MODULES[owner])
        assert "raymanager.engine.loop.serve" in imports, owner
        assert "raymanager.pool.adapter.wait_for" in imports, owner
        assert "ray" not in imports, owner  # no ray.wait of its own
