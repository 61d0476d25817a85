"""A one-slot mailbox between the subscription callback and the inference thread."""
from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds only the newest item. Putting over an item not yet taken replaces it and counts a drop.

    When the camera is faster than the model, the consumer always gets the newest frame and latency
    stays bounded instead of growing with a queue. Thread-safe: everything is read and written
    under its one lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: T | None = None
        self._received = 0
        self._dropped = 0

    @property
    def received(self) -> int:
        """Items put so far."""
        with self._lock:
            return self._received

    @property
    def dropped(self) -> int:
        """Items replaced before they were taken, so far."""
        with self._lock:
            return self._dropped

    def put(self, item: T) -> bool:
        """Store `item`. True when the slot was empty: the consumer has to be told to take it;
        False when it replaced an item that a consumer already told has not taken yet."""
        with self._lock:
            self._received += 1
            replaced = self._item is not None
            self._dropped += replaced
            self._item = item
            return not replaced

    def take(self) -> T | None:
        """The newest item, leaving the slot empty; None when it is empty."""
        with self._lock:
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        """Forget a waiting item without counting it as dropped (processing was stopped)."""
        with self._lock:
            self._item = None
