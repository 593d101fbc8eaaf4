"""The encoder's lock is granted in arrival order, so a request making many encoder calls lets a
waiting request in between two of them."""

from __future__ import annotations

import threading

from guards.encoder import FairLock


def test_a_thread_that_releases_and_asks_again_queues_behind_the_waiter() -> None:
    lock = FairLock()
    order: list[str] = []
    waiting = threading.Event()
    lock.__enter__()

    def waiter() -> None:
        waiting.set()
        with lock:
            order.append("waiter")

    thread = threading.Thread(target=waiter)
    thread.start()
    waiting.wait(5)
    for _ in range(5000):  # until the waiter has taken its ticket (5 s at most)
        if lock._next == 2:
            break
        threading.Event().wait(0.001)
    lock.__exit__()
    with lock:  # asks again at once: the waiter goes first
        order.append("again")
    thread.join(5)
    assert order == ["waiter", "again"]
