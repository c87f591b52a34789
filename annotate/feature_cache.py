"""Image features for the server: an LRU bounded by memory, filled on demand and ahead of the annotator.

One background thread runs the encoder: a request for an image that is not cached jumps the queue;
:meth:`FeatureCache.prefetch` queues the next images behind it (X-AnyLabeling pre-encodes the next 7
and keeps 10; here the defaults are 7 ahead and a memory budget that holds far more than 10 at the
default size). Features are kept as float32 ``feat0..feat3`` ``(1, C_i, Hp/s_i, Wp/s_i)``, the form the click
side (its per-image context graph) eats, so every click session of an image shares one copy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from interformer_edge.core.messages import first_line
from interformer_edge.runtime.features import ImageFeatures

log = logging.getLogger("interformer_edge.annotate")

Loader = Callable[[], "tuple[ImageFeatures, str]"]  # returns the features and where they came from


@dataclass(frozen=True)
class CachedFeatures:
    features: ImageFeatures  # float32 maps, shared read-only by the sessions of the image
    source: str  # "encoded" or "store"
    seconds: float  # time to encode or load
    nbytes: int


def as_decoder_ready(features: ImageFeatures) -> ImageFeatures:
    """The same features with contiguous float32 maps (converted once, then shared)."""
    maps = features.float32_maps()
    for array in maps.values():
        array.setflags(write=False)
    return ImageFeatures(maps, features.meta)


class FeatureCache:
    """Thread-safe LRU of :class:`CachedFeatures` with one encoder thread.

    Args:
        budget_bytes: the cache never holds more than this (the entry in use always stays).
        prefetch_depth: how many images :meth:`prefetch` queues at most.
    """

    def __init__(self, budget_bytes: int, prefetch_depth: int = 7) -> None:
        self.budget_bytes = budget_bytes
        self.prefetch_depth = prefetch_depth
        self._entries: OrderedDict[str, CachedFeatures] = OrderedDict()
        self._futures: dict[str, Future[CachedFeatures]] = {}
        self._queue: deque[tuple[str, Loader]] = deque()
        self._prefetch_keys: set[str] = set()  # queued ahead of need, not asked for yet
        self._lock = threading.Condition()
        self._closed = False
        self.encoded = 0  # images encoded or loaded, for the status line
        self._thread = threading.Thread(target=self._work, name="annotate-encoder", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------- public

    def peek(self, key: str) -> CachedFeatures | None:
        """The cached entry of ``key`` if there is one (nothing is loaded, the LRU order is kept)."""
        with self._lock:
            return self._entries.get(key)

    def cached(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def pending(self, key: str) -> bool:
        with self._lock:
            return key in self._futures

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: str, loader: Loader) -> CachedFeatures:
        """The features of ``key``, loading them first (ahead of any prefetch) if needed; blocks.

        Errors of the loader are raised here and not cached (the next call tries again).
        """
        return self.request(key, loader).result()

    def request(self, key: str, loader: Loader) -> Future[CachedFeatures]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                done: Future[CachedFeatures] = Future()
                done.set_result(entry)
                return done
            future = self._futures.get(key)
            if future is not None:
                if key in self._prefetch_keys:  # queued ahead, not started: it is needed now, move it first
                    self._queue = deque(job for job in self._queue if job[0] != key)
                    self._prefetch_keys.discard(key)
                    self._queue.appendleft((key, loader))
                    self._lock.notify()
                return future
            future = self._futures[key] = Future()
            self._queue.appendleft((key, loader))
            self._lock.notify()
            return future

    def prefetch(self, jobs: list[tuple[str, Loader]]) -> None:
        """Queue the given images (in order, at most ``prefetch_depth``) behind any urgent request.

        Earlier prefetches not started yet are dropped: the annotator moved on.
        """
        with self._lock:
            dropped = [key for key, _ in self._queue if key in self._prefetch_keys]
            self._queue = deque(job for job in self._queue if job[0] not in self._prefetch_keys)
            for key in dropped:  # never started: nobody else waits for a prefetch
                self._prefetch_keys.discard(key)
                self._futures.pop(key).cancel()
            for key, loader in jobs[: self.prefetch_depth]:
                if key in self._entries or key in self._futures:
                    continue
                self._futures[key] = Future()
                self._prefetch_keys.add(key)
                self._queue.append((key, loader))
            self._lock.notify()

    def close(self) -> None:
        """Stop the encoder thread; requests still queued fail (nobody is left waiting forever)."""
        with self._lock:
            self._closed = True
            queued = [self._futures.pop(key) for key, _ in self._queue if key in self._futures]
            self._queue.clear()
            self._lock.notify_all()
        for future in queued:
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the server is shutting down"))

    # ----------------------------------------------------------------------------------- internal

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                key, loader = self._queue.popleft()
                future = self._futures.get(key)
                self._prefetch_keys.discard(key)
                if future is None or not future.set_running_or_notify_cancel():
                    self._futures.pop(key, None)
                    continue
            started = time.perf_counter()
            try:
                features, source = loader()
                ready = as_decoder_ready(features)
                entry = CachedFeatures(
                    ready, source, time.perf_counter() - started, sum(a.nbytes for a in ready.maps.values())
                )
            except BaseException as err:  # handed to whoever waits; a prefetch failure is only logged
                with self._lock:
                    self._futures.pop(key, None)
                log.info("features of %s failed: %s", key, first_line(err))
                future.set_exception(err)
                continue
            with self._lock:
                self._futures.pop(key, None)
                self._entries[key] = entry
                self._entries.move_to_end(key)
                self.encoded += 1
                self._evict()
            log.info("features of %s ready (%s, %.2f s)", key, source, entry.seconds)
            future.set_result(entry)

    def _evict(self) -> None:
        total = sum(entry.nbytes for entry in self._entries.values())
        while total > self.budget_bytes and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes
