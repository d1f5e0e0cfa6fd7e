"""The run core's I/O commands, without Ray: it asks for input (Read) and for journal
writes (Record) instead of doing them, and hands a journaled result out only once
it is recorded."""

from __future__ import annotations

from typing import Any

from raymanager.batching import make_source
from raymanager.config import BatchConfig
from raymanager.engine.run import NOT_RECORDED, Read, Record, RunCore, Send
from raymanager.engine.run_io import read_input, write_records
from raymanager.engine.slots import Call, Slot, SlotState
from raymanager.engine.wire import Report


class _Journal:
    """An in-memory journal: what was written, and what a resume reads back."""

    def __init__(self, recorded: dict[int, Any] | None = None) -> None:
        self.recorded = dict(recorded or {})
        self.written: list[int] = []

    @property
    def resuming(self) -> bool:
        return bool(self.recorded)

    def replay(self, index: int) -> Any:
        return self.recorded.pop(index, NOT_RECORDED)

    def write(self, index: int, value: Any) -> None:
        self.written.append(index)

    def replayed(self) -> bool:
        return False


def _core(data: Any, journal: _Journal | None) -> tuple[RunCore, Any, list[Slot]]:
    source = make_source(data, batch_size=1)
    core = RunCore(source, BatchConfig(batch_size=1), width=1, max_concurrency=1,
                   actor_name="A", journal=journal)
    return core, source, [Slot(0, state=SlotState.READY)]


def test_the_core_asks_for_input_and_never_reads_the_source_itself() -> None:
    read: list[int] = []

    def items() -> Any:
        for value in range(3):
            read.append(value)
            yield value

    core, source, slots = _core(items(), None)
    command = core.next_send(slots, now=0.0)
    assert isinstance(command, Read) and read == []  # asked, not read
    core.taken(read_input(source, command, journal=None))
    assert read and core.batches_taken == len(read)
    assert isinstance(core.next_send(slots, now=0.0), Send)


def test_a_journaled_result_is_handed_out_only_once_recorded() -> None:
    journal = _Journal()
    core, source, slots = _core([10, 11], journal)
    core.taken(read_input(source, core.next_send(slots, now=0.0), journal))  # type: ignore[arg-type]
    send = core.next_send(slots, now=0.0)
    assert isinstance(send, Send)
    call = Call(None, send.slot, 0, None, group=send.group, started=0.0)  # type: ignore[arg-type]
    send.slot.calls.append(call)
    core.sent(call)
    core.returned(call, Report([20] * send.group.count, 0.01))
    assert not core.deliverable() and not core.finished() and journal.written == []
    record = core.take_records()
    assert isinstance(record, Record) and core.take_records() is None
    write_records(journal, record)
    core.recorded(record)
    assert journal.written == [i for i, _ in record.results] and core.deliverable()


def test_a_resumed_run_reads_recorded_batches_back_through_the_read_event() -> None:
    journal = _Journal({0: "zero", 1: "one"})
    core, source, slots = _core([10, 11, 12], journal)
    command = core.next_send(slots, now=0.0)
    assert isinstance(command, Read)
    event = read_input(source, Read(3), journal)
    assert event.replayed == ["zero", "one", NOT_RECORDED]
    core.taken(event)
    assert core.pop_ready() == [(0, "zero"), (1, "one")]
    send = core.next_send(slots, now=0.0)
    assert isinstance(send, Send) and send.group.first == 2  # the one not recorded runs
