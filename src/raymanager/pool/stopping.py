"""The calls of a stopped run: a grace to finish, then their actors replaced.

A run stops early (an error, a caller that stopped iterating, Ctrl-C) with
calls still on its actors. Letting them finish keeps the actors (and what
they hold: a model, an environment, a warm cache); only an actor still busy
after the grace is killed and replaced, so the pool is idle and usable when
the run has stopped.

No ray.cancel for a sync actor: cancelling an actor call that has not
reached the actor yet leaves a gap in its task sequence, and the actor's next
call then waits 30 s for the missing one (seen with Ray 2.60). An async actor
runs its calls out of order, so after Ctrl-C its calls are cancelled through
Ray (the host lets the CancelledError end the call) and the actor stays.
"""

from __future__ import annotations

import contextlib
from typing import Any

import ray

from raymanager.engine.slots import Call
from raymanager.pool.adapter import PoolAdapter
from raymanager.pool.host import is_async

__all__ = ["finish_calls"]


def finish_calls(pool: PoolAdapter, calls: list[Call], grace_s: float, *,
                 interrupted: bool) -> list[Call]:
    """Wait up to ``grace_s`` for ``calls`` to end; those still running, whose
    actors the engine then replaces (``engine/loop.py``'s ``stop``).

    Called without the pool's lock. A second Ctrl-C during the grace ends
    the wait at once: every call still running is returned.

        >>> finish_calls(pool, [call], 0.3, interrupted=True)  # doctest: +SKIP
    """
    by_ref = {call.ref: call for call in calls}
    if interrupted and is_async(pool.actor_class):
        for ref in by_ref:
            with contextlib.suppress(Exception):  # finished, or Ray shut down
                ray.cancel(ref)
    try:
        with pool.ray_call():
            _, stuck = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=grace_s)
    except KeyboardInterrupt:
        # A second Ctrl-C during the grace: replace the busy actors now.
        stuck = _busy(list(by_ref))
    except Exception:  # shut down meanwhile: the actors are gone already
        stuck = []
    return [by_ref[ref] for ref in stuck]


def _busy(refs: list[Any]) -> list[Any]:
    """Those of ``refs`` whose calls have not ended (all of them if Ray cannot say)."""
    try:
        _, busy = ray.wait(refs, num_returns=len(refs), timeout=0)
    except BaseException:  # a third Ctrl-C, or Ray shut down: replace them all
        return refs
    return busy
