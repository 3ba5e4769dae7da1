"""The reader and writer threads: order kept, bounded, errors raised where they are used."""

from __future__ import annotations

import threading
import time

import pytest

from vidiff.io.background import Prefetch, Writer


def test_prefetch_keeps_order_and_reads_at_most_depth_ahead():
    produced = []

    def frames():
        for index in range(20):
            produced.append(index)
            yield index

    with Prefetch(frames(), depth=3) as ahead:
        seen = []
        for item in ahead:
            time.sleep(0.005)  # the consumer is the slow side: the reader fills the queue
            seen.append(item)
            # one in the consumer's hands, three queued, one the reader holds waiting for room
            assert len(produced) - len(seen) <= 4
    assert seen == list(range(20))


def test_prefetch_raises_the_readers_error_after_the_items_before_it():
    def frames():
        yield 0
        yield 1
        raise OSError(5, "damaged file")

    seen = []
    with pytest.raises(OSError, match="damaged file"), Prefetch(frames()) as ahead:
        for item in ahead:
            seen.append(item)
    assert seen == [0, 1]


def test_prefetch_closes_early_without_reading_to_the_end():
    produced = []

    def endless():
        index = 0
        while True:
            produced.append(index)
            yield index
            index += 1

    with Prefetch(endless(), depth=2) as ahead:
        for item in ahead:
            if item == 3:
                break
    count = len(produced)
    time.sleep(0.05)
    assert len(produced) == count and count <= 3 + 2 + 2  # the thread stopped


def test_writer_runs_jobs_in_order_in_another_thread():
    done, threads = [], set()
    with Writer(depth=2) as writer:
        for index in range(10):
            writer.submit(lambda index=index: (done.append(index), threads.add(threading.get_ident())))
    assert done == list(range(10))  # drained on leaving
    assert threads and threading.get_ident() not in threads


def test_a_failing_job_stops_the_rest_and_raises_at_the_next_call():
    done = []

    def fail():
        raise OSError(28, "No space left on device")

    writer = Writer()
    writer.submit(lambda: done.append(1))
    writer.submit(fail)
    writer.submit(lambda: done.append(3))  # queued before the failure was seen, so it is accepted...
    with pytest.raises(OSError, match="No space"):
        writer.drain()
    assert done == [1]  # ...but not run
    writer.close()


def test_leaving_on_an_error_still_finishes_the_queued_jobs():
    done = []
    with pytest.raises(RuntimeError, match="model failed"), Writer(depth=8) as writer:
        for index in range(5):
            writer.submit(lambda index=index: (time.sleep(0.01), done.append(index)))
        raise RuntimeError("model failed")
    assert done == list(range(5))
