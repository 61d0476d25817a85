"""The node's inference thread and its newest-frame mailbox, on their own (no ROS)."""
from __future__ import annotations

import threading
import time

import pytest

from clustvit_ros.ros.inference_thread import InferenceThread
from clustvit_ros.ros.latest_slot import LatestSlot


@pytest.fixture
def inference():
    thread = InferenceThread("test_inference")
    yield thread
    thread.close(5.0)


def test_jobs_run_in_order_on_one_thread_that_is_not_the_callers(inference):
    futures = [inference.submit(lambda i=i: (i, threading.get_ident())) for i in range(20)]
    results = [f.result(5.0) for f in futures]
    assert [i for i, _ in results] == list(range(20))
    assert len({ident for _, ident in results}) == 1 and results[0][1] != threading.get_ident()


def test_a_failing_job_hands_its_exception_over_and_the_thread_goes_on(inference):
    failed = inference.submit(lambda: 1 / 0)
    assert isinstance(failed.exception(5.0), ZeroDivisionError)
    assert inference.submit(lambda: "next").result(5.0) == "next"


def test_drain_waits_for_the_jobs_submitted_so_far():
    inference = InferenceThread("test_drain")
    release = threading.Event()
    inference.submit(release.wait)
    assert not inference.drain(0.2)
    release.set()
    assert inference.drain(5.0)
    assert inference.close(5.0)


def test_close_is_bounded_by_the_job_in_flight_and_drops_the_queued_ones():
    inference = InferenceThread("test_close")
    release, ran = threading.Event(), []
    inference.submit(release.wait)
    queued = inference.submit(lambda: ran.append(1))
    start = time.monotonic()
    assert not inference.close(0.2)  # the job in flight goes on: the caller must not finalise
    assert time.monotonic() - start < 2.0
    release.set()
    deadline = time.monotonic() + 5.0
    while any(t.name == "test_close" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not ran and not queued.done()


def test_the_slot_keeps_the_newest_item_and_counts_the_replaced_ones():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1)  # empty: the consumer must be told
    assert not slot.put(2) and not slot.put(3)  # it has been told already
    assert (slot.take(), slot.take()) == (3, None)
    assert (slot.received, slot.dropped) == (3, 2)
    assert slot.put(4)
    slot.clear()
    assert slot.take() is None and slot.dropped == 2  # cleared, not dropped
