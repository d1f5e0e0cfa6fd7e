"""An actor sent its ``max_batches_per_actor`` must be recycled, whoever got its results.

Found by the engine simulator once it recycled actors (``tests/test_engine_model.py``;
``docs/development.md``, the simulator's findings), then reproduced here on
Ray: the pool counts towards recycling only the results it handed to a live
run (``record``, called from ``pool/dispatch.py`` only when ``RunCore.returned``
is true, with ``len(report.results)``), while the engine
stops sending to an actor once it was *sent* its max. An actor whose last
batches went to a run that stopped (or came back cut short by a raise) is
then neither recycled nor sent work: a one-actor pool waits forever.

Fixed in the pool's core: :meth:`raymanager.engine.pool.PoolCore.finished`
recycles an actor sent its max once no call is left on it, whoever its last
calls were for (the same rule the engine's simulator judges by).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from engine_actors import Misbehave

from raymanager import BatchConfig, RayManager

#: Long enough for ten 10 ms batches and a recycle on a loaded 2-core machine.
WAIT_S = 15.0


@pytest.mark.slow
def test_an_actor_whose_last_batches_went_to_a_stopped_run_still_serves(
        manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": 0.01}, num_actors=1,
                                     max_batches_per_actor=4)
    stream = manager.imap(pool, range(100), BatchConfig(batch_size=1))
    assert next(stream) == [0]  # the first, untimed call: one batch
    time.sleep(0.5)  # the second call (the actor's last 3 batches) returns meanwhile
    stream.close()  # the consumer stops: those results are dropped
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(manager.process_in_parallel(
        pool, range(10), BatchConfig(batch_size=1))), daemon=True)
    thread.start()
    thread.join(WAIT_S)
    stuck = not out
    if stuck:
        pool.shutdown()  # ends the waiting run (ManagerShutdownError in its thread)
        thread.join(WAIT_S)
    assert not stuck, f"a run on the pool got nothing in {WAIT_S:g} s"
    assert len(out[0]) == 10
