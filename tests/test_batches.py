"""wsk.batches: many greenlets' writes in few calls, in the order they were asked for."""

from __future__ import annotations

import eventlet

from wsk.batches import Batches


class Recorder:
    def __init__(self, fail_on: object = None) -> None:
        self.calls: list[list[int]] = []
        self.fail_on = fail_on

    def write(self, items: list[int]) -> list[object]:
        self.calls.append(list(items))
        eventlet.sleep(0.01)  # a round trip: others gather meanwhile
        if self.fail_on in items:
            raise ConnectionError("Redis went away")
        return [item * 10 for item in items]


def test_writes_gathered_meanwhile_go_in_one_call_in_order():
    recorder = Recorder()
    batches = Batches(recorder.write, size=4)
    pool = eventlet.GreenPool()
    results = list(pool.imap(batches.submit, range(10)))
    assert results == [item * 10 for item in range(10)]
    # all ten asked before the first call: three calls, 4 items at most each
    assert recorder.calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert not batches.writing and len(batches) == 0


def test_a_failed_call_is_the_result_of_its_batch_only():
    recorder = Recorder(fail_on=3)
    batches = Batches(recorder.write, size=100)
    assert batches.submit(0) == 0
    results = list(eventlet.GreenPool().imap(batches.submit, range(1, 6)))
    assert recorder.calls[1:] == [[1, 2, 3, 4, 5]]
    assert all(isinstance(result, ConnectionError) for result in results)
    assert batches.submit(7) == 70  # and the next batch is written again


def test_posted_items_are_written_without_waiting():
    recorder = Recorder()
    batches = Batches(recorder.write, size=100)
    for item in range(5):
        batches.post(item)
    assert recorder.calls == []  # nothing waited for them
    eventlet.sleep(0.1)
    assert [item for call in recorder.calls for item in call] == list(range(5))
