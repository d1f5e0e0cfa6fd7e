"""The engine's pure policies: how big a call is, how deep an actor's queue,
how far a run reads ahead, and when a running call has overstayed.

Functions of numbers in, numbers out; no clock is read here (``now`` is
given), so each one is unit-tested directly and the simulator drives them
over many schedules. The constants were chosen with ``benchmarks/run.py``
(W1, W2 and the driver-scaling row) and ``benchmarks/driver_scaling.py``;
their figures are on the docs' results page, not here.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable

from raymanager.engine.slots import Call, Loss, LossKind

__all__ = [
    "CANCEL_GRACE_SECONDS",
    "POLL_SECONDS",
    "SCAN_ALL_FROM",
    "call_deadline",
    "fair_share",
    "group_size",
    "interrupt_grace",
    "may_queue_behind",
    "probe_held",
    "queue_depth",
    "window_open",
]

#: Work per remote call the group sizing aims at: long enough that the call's
#: fixed cost (CPU in the driver, in the actor and in Ray's daemons, on the
#: same cores as the work on a small machine) is a small share, short enough
#: that a worker's death loses little and results stream out steadily (the
#: last calls of a run are cut shorter, so actors rarely wait on each other).
#: Chosen with benchmarks/actor_gap.py --work w1 (0.1, 0.2 and 0.3 s in
#: turns); the figures are on the docs' results page.
TARGET_CALL_SECONDS = 0.2
#: Work per call below which a call's fixed cost would dominate: the tail of a
#: run of tiny batches is not cut finer than this.
MIN_CALL_SECONDS = 0.005
#: A second call is queued on a busy actor for batches at most this long: it
#: hides the driver's reaction time between two calls. Behind longer batches
#: a queued call could wait while another actor sits idle, so it is queued
#: only while QUEUE_AHEAD_CALLS_LEFT full calls per actor of work are left:
#: the tail, where calls shrink and an idle actor should take what is left,
#: has none (the driver-scaling row of benchmarks/run.py chose both), unless
#: the pool is so wide that serving every actor keeps the driver busy a large
#: share of a call (see queue_depth; chosen with 64 sleep-bound actors, in
#: turns).
QUEUE_AHEAD_MAX_BATCH_S = 0.02
QUEUE_AHEAD_CALLS_LEFT = 2
#: A call running past STRAGGLER_FACTOR x its expected time + STRAGGLER_SLACK_S
#: is a straggler: nothing more is queued behind it. Generous, because on a
#: loaded machine calls often take twice their time, and refusing to queue
#: then would idle the actor between calls.
STRAGGLER_FACTOR = 4.0
STRAGGLER_SLACK_S = 0.05
#: Seconds a stopped run lets its calls in flight finish before their actors
#: are killed and replaced instead.
CANCEL_GRACE_SECONDS = 2.0
#: Bounds of the grace a run stopped by Ctrl-C gives the calls it has in
#: flight (see interrupt_grace): at least the driver's reaction time on a
#: loaded machine, at most what a stop for any other reason gives.
MIN_INTERRUPT_GRACE_S = 0.25
MAX_INTERRUPT_GRACE_S = CANCEL_GRACE_SECONDS
#: An interrupted call gets this many times what is left of its expected
#: time: on a loaded machine calls often take twice theirs (STRAGGLER_FACTOR).
INTERRUPT_GRACE_FACTOR = 2.0
#: The driver's fixed cost of one remote call (submit, wait, get, bookkeeping
#: and Ray's own threads), as benchmarks/driver_scaling.py measures it. A fixed
#: figure, not one measured live: a live cost per call includes work per batch
#: (pickling rows), which grows with the group and would feed back into ever
#: larger groups.
DRIVER_SECONDS_PER_CALL = 0.002
#: Calls are sized so that cost keeps the driver busy at most 1/DRIVER_SHARE of the time.
DRIVER_SHARE = 4.0
#: Until a batch has been timed, every call carries one batch (a probe). A run
#: sends probes for PROBE_SEND_SECONDS, then holds the others back for up to
#: PROBE_HOLD_SECONDS, until a result tells how long a batch takes: on 10,000
#: actors a round of probes costs one driver ~5 s of calls (benchmarks/
#: ray_call_rate.py), which sized calls then have to follow. Batches longer
#: than the hold lose at most the hold (the rest are sent when it ends).
PROBE_SEND_SECONDS = 0.05
PROBE_HOLD_SECONDS = 0.5
#: With more calls in flight than this, one scan takes every finished call
#: (with few, a second scan per result costs more than it saves).
SCAN_ALL_FROM = 8
#: Longest single wait, so a run notices a shutdown or a slot to restart.
POLL_SECONDS = 1.0
#: Read-ahead window, in batches sent but not yet handed out: at least this,
#: and at least WINDOW_CALLS_PER_ACTOR full calls per actor.
MIN_WINDOW_BATCHES = 64
WINDOW_CALLS_PER_ACTOR = 8
#: From a source of unknown length, a call carries at most this many times
#: the batches of the largest call that has come back: group sizes grow from
#: one batch by doubling, so a slow generator is never read far ahead of its
#: first result. A source of known length needs no such ramp (its reads cost
#: nothing), and the ramp would cost a pool of many actors a few rounds of
#: short calls.
GROWTH_PER_CALL = 2


def group_size(
    *,
    seconds_per_batch: float | None,
    width: int,
    remaining: int | None,
    timeout_s: float | None,
    batch_nbytes: int | None,
    max_inflight_bytes: int,
    largest_returned: int,
) -> int:
    """How many consecutive batches the next call carries.

    One until a batch has been timed; then about TARGET_CALL_SECONDS of work,
    capped by what is left (guided self-scheduling), by the timeout and by the
    bytes in flight; from a source of unknown length (``remaining`` None), by
    GROWTH_PER_CALL x the largest call returned.

    >>> group_size(seconds_per_batch=0.001, width=2, remaining=None, timeout_s=None,
    ...            batch_nbytes=None, max_inflight_bytes=1 << 30, largest_returned=256)
    200
    """
    if seconds_per_batch is None:
        return 1  # the first call on each actor measures how long a batch takes
    per_batch = max(seconds_per_batch, 1e-7)
    # With many actors the driver's fixed cost per call bounds throughput.
    target = max(TARGET_CALL_SECONDS, DRIVER_SHARE * width * DRIVER_SECONDS_PER_CALL)
    if timeout_s is not None:
        # A hang inside a group is found only as a whole: keep groups well
        # under the timeout so it still fires about timeout_s after it began.
        target = min(target, timeout_s / 4)
    size = max(1, int(target / per_batch))
    if remaining is None:
        size = min(size, max(1, GROWTH_PER_CALL * largest_returned))
    else:
        # Never more than a share of what is left, so the last calls are short
        # and no actor waits long at the end; but never so short that the
        # call's own cost dominates its work.
        floor = max(1, math.ceil(MIN_CALL_SECONDS / per_batch))
        # Nor, on a wide pool, shorter than the driver takes to send every
        # actor a call (width x DRIVER_SECONDS_PER_CALL): the tail's small
        # calls would leave actors waiting for the driver, not for work (at
        # 1,000 actors a round of 1-batch calls takes the driver ~0.5 s). At
        # most an even share of what is left, so the last round stays even.
        turn = min(math.ceil(width * DRIVER_SECONDS_PER_CALL / per_batch),
                   math.ceil(remaining / width))
        # Nor, once what is left is less than a round of such calls, so short
        # that the driver takes longer to send the calls left (remaining /
        # size of them) than one of them runs: shares of what is left shrink
        # call by call, and on 10,000 actors the last ones fell to one batch
        # each while each actor waited ~5 s for the driver's next round. The
        # tail's makespan, calls left x driver cost + one call's work, is
        # least at this size.
        drain = math.ceil(math.sqrt(remaining * DRIVER_SECONDS_PER_CALL / per_batch))
        size = min(size, max(floor, turn, drain, math.ceil(remaining / (2 * width))))
    if batch_nbytes:
        # Inline data: all calls in flight together stay within the byte
        # bound. Two calls per actor, and each holds its rows twice in the
        # driver (the rows and their pickled copy until the call is done).
        share = max_inflight_bytes // (4 * width)
        size = min(size, max(1, share // batch_nbytes))
    return size


def queue_depth(
    *,
    max_concurrency: int,
    seconds_per_batch: float | None,
    remaining: int | None,
    width: int,
    size: int,
) -> int:
    """Calls to keep on one actor at once: running, or queued behind.

    Never below ``max_concurrency`` (the calls run side by side, none waits),
    else two for short timed batches, for calls no longer than the length at
    which serving every actor keeps the driver busy 1/DRIVER_SHARE of the time
    (DRIVER_SHARE x width x DRIVER_SECONDS_PER_CALL, the floor group_size puts
    under a wide pool's calls), or far from the tail; else one.

    >>> queue_depth(max_concurrency=1, seconds_per_batch=0.001, remaining=None,
    ...             width=2, size=100)
    2
    >>> queue_depth(max_concurrency=1, seconds_per_batch=0.04, remaining=10,
    ...             width=64, size=2)  # a 64-actor tail
    2
    """
    if max_concurrency > 1:
        return max_concurrency
    if seconds_per_batch is None:
        return 1  # nothing is queued behind a batch nobody has timed
    if seconds_per_batch <= QUEUE_AHEAD_MAX_BATCH_S:
        return 2
    if seconds_per_batch * size <= DRIVER_SHARE * width * DRIVER_SECONDS_PER_CALL:
        # Calls this short keep the driver busy a large share of the time, so
        # an actor left with nothing queued waits for it at every call's end
        # (in a many-actor tail, where calls end together, each waits its
        # turn behind the others). On 2 actors this holds only below 16 ms
        # of work, which the rule above already queues.
        return 2
    # A stream of unknown length never counts as far from its tail.
    far_from_tail = remaining is not None and remaining >= QUEUE_AHEAD_CALLS_LEFT * width * size
    return 2 if far_from_tail else 1


def may_queue_behind(calls: Iterable[Call], *, max_concurrency: int, now: float) -> bool:
    """Whether one more call may wait behind ``calls`` (those of one actor, in order).

    Only behind calls of known, on-time duration: a call queued behind a batch
    nobody has timed, or behind a straggler, would hold up a result that an
    idle actor could have made (Ray gh-23107). A suspect batch runs alone.

    >>> may_queue_behind([], max_concurrency=1, now=0.0)
    True
    """
    calls = list(calls)
    if any(call.group is not None and call.group.suspect for call in calls):
        return False
    if max_concurrency > 1 or not calls:
        return True
    if any(call.expected is None for call in calls):
        return False
    head = calls[0]
    if head.started is not None and head.expected is not None:
        return now - head.started <= STRAGGLER_FACTOR * head.expected + STRAGGLER_SLACK_S
    return True


def probe_held(*, timed: bool, probes_began: float | None, now: float) -> float | None:
    """Until when a run holds back its untimed calls, or None if it does not now.

    >>> probe_held(timed=False, probes_began=0.0, now=0.1)
    0.55
    >>> probe_held(timed=False, probes_began=0.0, now=0.01) is None
    True
    """
    if timed or probes_began is None:
        return None
    held_from = probes_began + PROBE_SEND_SECONDS
    held_until = held_from + PROBE_HOLD_SECONDS
    return held_until if held_from <= now < held_until else None


def window_open(
    *,
    taken: int,
    delivered: int,
    width: int,
    size: int,
    inflight_bytes: int,
    max_inflight_bytes: int,
) -> bool:
    """Whether the run may read more of its source.

    Bounds what is read but not yet handed to the caller (results wait for an
    earlier slow batch; inputs sit in the object store). Counted from what was
    *handed out*: an unordered run never advances a "next in order" mark, and
    measuring from one stopped it reading after MIN_WINDOW_BATCHES for good.

    >>> window_open(taken=64, delivered=0, width=2, size=1, inflight_bytes=0,
    ...             max_inflight_bytes=1 << 20)
    False
    """
    window = max(MIN_WINDOW_BATCHES, WINDOW_CALLS_PER_ACTOR * width * size)
    return taken - delivered < window and inflight_bytes < max_inflight_bytes


def call_deadline(call: Call, *, timeout_s: float, seconds_per_batch: float | None) -> float:
    """When a started call has overrun ``timeout_s``: per batch, not per group.

    The group's other batches get twice their measured time on top.
    """
    assert call.started is not None and call.group is not None
    others = (call.group.count - 1) * 2 * (seconds_per_batch or 0.0)
    return call.started + timeout_s + others


class Blame(enum.Enum):
    """Whose fault it is that a call was lost with its actor: :func:`blame`."""

    #: Not the call's: its node was drained, another owner's stopped call had the
    #: actor replaced, or it waited behind (or ran beside) a call that hung.
    NOT_ITS = "not its"
    #: Maybe the call's: the actor died with other calls on it, any of which
    #: may have killed it. Re-run alone, so the next death tells.
    UNKNOWN = "unknown"
    #: The call's: it ran alone on the actor that died, or ran past its timeout.
    ITS = "its"


def blame(call: Call, *, running: bool, alone: bool, loss: Loss) -> Blame:
    """The one charging rule, for every owner of calls (runs, submissions, broadcasts).

    ``running``: the call was the first unfinished one on its actor (Ray runs
    an actor's calls in order); ``alone``: no other call was lost with it.
    Only :data:`Blame.ITS` uses one of the call's tries; a run charges it to a
    one-batch call only (a group's batches are re-run alone first).

    >>> from raymanager.engine.slots import Slot
    >>> call = Call("ref", Slot(0), 1, None)
    >>> blame(call, running=True, alone=True, loss=Loss(LossKind.DIED, "", "")).value
    'its'
    >>> blame(call, running=True, alone=False, loss=Loss(LossKind.DIED, "", "")).value
    'unknown'
    >>> blame(call, running=True, alone=True, loss=Loss(LossKind.PREEMPTED, "", "")).value
    'not its'
    """
    if loss.kind in (LossKind.PREEMPTED, LossKind.STOPPED):
        return Blame.NOT_ITS
    timed_out = loss.kind is LossKind.TIMED_OUT
    if timed_out:
        # The engine names the call that overran: only it is charged, not
        # those queued behind it or run beside it (max_concurrency > 1).
        if loss.culprit is not None:
            running = running and loss.culprit is call
        return Blame.ITS if running else Blame.NOT_ITS
    return Blame.ITS if running and alone else Blame.UNKNOWN


def fair_share(num_slots: int, max_actors: int, other_busy_runs: int) -> int:
    """Actors one run may keep busy while ``other_busy_runs`` runs have calls in flight.

    All of them alone, else an equal share (rounded up: an odd actor goes to
    whoever asks first). Counted from the pool's size to be (an elastic pool
    below ``max_actors`` grows only for a run whose share leaves room). A run
    left suspended soon has no call in flight and takes no share.

    >>> fair_share(1, 3, 0), fair_share(5, 5, 1)
    (3, 3)
    """
    return max(1, -(-max(num_slots, max_actors) // (other_busy_runs + 1)))


def interrupt_grace(calls: Iterable[Call], *, now: float) -> float:
    """Seconds a run stopped by Ctrl-C waits for ``calls`` before replacing their actors.

    Per actor, what is left of the expected time of its calls in flight (an
    actor runs them in order: those queued behind the running one finish
    after it), the longest of them times INTERRUPT_GRACE_FACTOR, within
    [MIN_INTERRUPT_GRACE_S, MAX_INTERRUPT_GRACE_S]. Calls are sized to about
    TARGET_CALL_SECONDS, so this is a few hundred ms; a call of unknown
    length (its batches not timed yet: a run's first call, a broadcast)
    gets the most.

    >>> from raymanager.engine.slots import Slot
    >>> slot = Slot(0)
    >>> running = Call("a", slot, 0, None, started=9.5, expected=0.75)  # 0.25 s left
    >>> interrupt_grace([running], now=10.0)
    0.5
    >>> interrupt_grace([running, Call("b", slot, 0, None, expected=0.25)], now=10.0)
    1.0
    """
    work: dict[int, float] = {}
    ran: dict[int, float] = {}
    for call in calls:
        if call.expected is None:
            return MAX_INTERRUPT_GRACE_S
        index = call.slot.index
        work[index] = work.get(index, 0.0) + call.expected
        if call.started is not None:  # the one running: what it did is not left
            ran[index] = max(ran.get(index, 0.0), now - call.started)
    longest = max((max(0.0, work[index] - ran.get(index, 0.0)) for index in work), default=0.0)
    return min(MAX_INTERRUPT_GRACE_S,
               max(MIN_INTERRUPT_GRACE_S, INTERRUPT_GRACE_FACTOR * longest))
