"""wsk.batches: many greenlets' writes in few calls, in the order they were asked for."""

from __future__ import annotations

import eventlet
import greenlet

from wsk.batches import Batches


class Recorder:
    def __init__(self, fail_on: object = None) -> None:
        self.calls: list[list[int]] = []
        self.writers: list[greenlet.greenlet] = []
        self.fail_on = fail_on

    def write(self, items: list[int]) -> list[object]:
        self.calls.append(list(items))
        self.writers.append(greenlet.getcurrent())
        eventlet.sleep(0.01)  # a round trip: others gather meanwhile
        if self.fail_on in items:
            raise ConnectionError("Redis went away")
        return [item * 10 for item in items]


def test_writes_gathered_meanwhile_go_in_one_call_in_order():
    recorder = Recorder()
    batches = Batches(recorder.write, size=4)
    pool = eventlet.GreenPool()
    with eventlet.Timeout(5):  # items nobody writes would hang here
        results = list(pool.imap(batches.submit, range(10)))
    assert results == [item * 10 for item in range(10)]
    # the first is written at once; the nine asked during its call follow, 4 at most each
    assert recorder.calls == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert not batches.writing and len(batches) == 0


def test_a_submit_on_a_quiet_node_is_written_by_its_caller():
    recorder = Recorder()
    batches = Batches(recorder.write, size=4)
    assert [batches.submit(item) for item in range(3)] == [0, 10, 20]
    assert recorder.calls == [[0], [1], [2]]
    assert recorder.writers == [greenlet.getcurrent()] * 3  # no writer greenlet
    assert not batches.writing


def test_a_failed_call_is_the_result_of_its_batch_only():
    recorder = Recorder(fail_on=3)
    batches = Batches(recorder.write, size=100)
    assert batches.submit(0) == 0
    results = list(eventlet.GreenPool().imap(batches.submit, range(1, 6)))
    assert recorder.calls[1:] == [[1], [2, 3, 4, 5]]
    assert results[0] == 10  # written alone, before the batch that failed
    assert all(isinstance(result, ConnectionError) for result in results[1:])
    assert batches.submit(7) == 70  # and the next batch is written again


def test_a_caller_written_item_that_fails_fails_alone():
    recorder = Recorder(fail_on=0)
    batches = Batches(recorder.write, size=100)
    assert isinstance(batches.submit(0), ConnectionError)
    assert not batches.writing
    assert batches.submit(1) == 10


def test_a_caller_killed_while_writing_hands_on_what_gathered():
    recorder = Recorder()
    batches = Batches(recorder.write, size=100)
    first = eventlet.spawn(batches.submit, 0)
    eventlet.sleep(0)  # it is in its call now
    others = [eventlet.spawn(batches.submit, item) for item in (1, 2)]
    eventlet.sleep(0)
    first.kill()
    with eventlet.Timeout(2):  # nobody left to write them would hang here
        assert [other.wait() for other in others] == [10, 20]
    assert recorder.calls == [[0], [1, 2]]
    assert not batches.writing and batches.submit(3) == 30


def test_posted_items_are_written_without_waiting():
    recorder = Recorder()
    batches = Batches(recorder.write, size=100)
    for item in range(5):
        batches.post(item)
    assert recorder.calls == []  # nothing waited for them
    eventlet.sleep(0.1)
    assert [item for call in recorder.calls for item in call] == list(range(5))
