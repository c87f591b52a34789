"""Click sessions of the server: one per browser tab and object, all sharing one decoder.

A session is a runtime :class:`ClickSession` plus a lock (two clicks of one tab never interleave) and
its last use; idle sessions expire. The decoder itself is shared: ONNX Runtime and OpenVINO allow
concurrent ``run`` calls, and the server bounds how many run at once (its click thread pool).

Memory of one open session, for an image of ``H x W`` pixels encoded at ``h x w``
(:func:`session_bytes`): the features are shared with the cache, so a session holds its reference
label and prediction (``2 h w`` bytes), the logit differences of the last ``undo_cache`` clicks plus
the current one (``4 h w`` each), the mask at the photo's size (``H W``) and, per click, about
``h w / 8`` bytes of undo history. With ``undo_cache=2`` and 20 clicks: about 4.4 MB at 512 x 512,
13 MB at 1024 x 768.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from interformer_edge.runtime.decoder import Decoder
from interformer_edge.runtime.features import ImageFeatures
from interformer_edge.runtime.session import ClickSession

from .errors import SESSION_GONE, ClientGoneError, GoneError, NotFoundError

UNDO_CACHE = 2  # clicks whose logits stay for an undo without a decoder run (older undos rerun the decoder once)
_FORGOTTEN_IDS = 4096  # expired ids remembered, to answer 410 instead of 404

T = TypeVar("T")


def session_bytes(
    original_size: tuple[int, int], encoded_size: tuple[int, int], clicks: int = 20, undo_cache: int = UNDO_CACHE
) -> int:
    """Bytes one click session holds besides the shared features (see the module docstring)."""
    height, width = original_size
    pixels = encoded_size[0] * encoded_size[1]
    return 2 * pixels + 4 * pixels * (undo_cache + 1) + height * width + clicks * (pixels // 8 + 256)


@dataclass
class ObjectSession:
    """One object being clicked on one image by one tab."""

    id: str
    image: str
    label: str
    clicks: ClickSession
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionRegistry:
    """The open sessions; ids are unguessable tokens handed to the page.

    Args:
        decoder: the shared decoder.
        idle_seconds: a session untouched this long is closed.
        max_sessions: at most this many open sessions; the least recently used goes first.
    """

    def __init__(self, decoder: Decoder, idle_seconds: float = 1800.0, max_sessions: int = 64) -> None:
        self.decoder = decoder
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, ObjectSession] = OrderedDict()
        self._forgotten: OrderedDict[str, str] = OrderedDict()  # id -> why it is gone
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def open(self, image: str, features: ImageFeatures, label: str) -> ObjectSession:
        clicks = ClickSession(self.decoder, features, undo_cache=UNDO_CACHE)
        session = ObjectSession(secrets.token_urlsafe(12), image, label, clicks)
        with self._lock:
            self._expire_locked()
            while len(self._sessions) >= self.max_sessions:
                old_id, _ = self._sessions.popitem(last=False)
                self._forget_locked(old_id, "closed to make room for newer sessions")
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> ObjectSession:
        with self._lock:
            self._expire_locked()
            session = self._sessions.get(session_id)
            if session is None:
                why = self._forgotten.get(session_id)
                if why is not None:
                    raise GoneError(f"click session {session_id} was {why}: start the object again")
                raise NotFoundError(f"unknown click session {session_id!r}", code=SESSION_GONE)
            session.last_used = time.monotonic()
            self._sessions.move_to_end(session_id)
            return session

    def images_in_progress(self) -> set[str]:
        """Images with an open session that has clicks (some tab is working on them)."""
        with self._lock:
            self._expire_locked()
            return {s.image for s in self._sessions.values() if s.clicks.num_clicks}

    def use(self, session_id: str, action: Callable[[ObjectSession], T]) -> T:
        """Run ``action`` on the session while holding its lock (one action of a session at a time)."""
        session = self.get(session_id)
        with session.lock:
            result = action(session)
            session.last_used = time.monotonic()
            return result

    def close(self, session_id: str) -> None:
        with self._lock:
            if self._sessions.pop(session_id, None) is None and session_id not in self._forgotten:
                raise NotFoundError(f"unknown click session {session_id!r}")
            self._forget_locked(session_id, "closed")

    def _forget_locked(self, session_id: str, why: str) -> None:
        self._forgotten[session_id] = why
        while len(self._forgotten) > _FORGOTTEN_IDS:
            self._forgotten.popitem(last=False)

    def _expire_locked(self) -> None:
        limit = time.monotonic() - self.idle_seconds
        for session_id in [sid for sid, s in self._sessions.items() if s.last_used < limit]:
            del self._sessions[session_id]
            self._forget_locked(session_id, f"idle for more than {self.idle_seconds:.0f} s and closed")


# ---------------------------------------------------------------------------------- tool sessions

Click = tuple[int, int, bool]  # (y, x, positive) in pixels of the original image


@dataclass
class _Replay:
    session: ClickSession
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReplaySessions:
    """Click sessions for tools that send every click of an object again with each request (CVAT, Label Studio).

    The runtime's session is sequential (each click sees the previous prediction), so a request is
    answered by replaying its clicks in order. A request that only adds clicks to the previous one of
    the same image (or removes the last ones: an undo) reuses that session: one decoder run per new
    click, as in the page. An LRU keeps the last ``capacity`` images' sessions.
    """

    def __init__(self, decoder: Decoder, capacity: int = 16) -> None:
        self.decoder = decoder
        self.capacity = capacity
        self._entries: OrderedDict[str, _Replay] = OrderedDict()
        self._lock = threading.Lock()

    def run(
        self,
        key: str,
        features: ImageFeatures,
        clicks: list[Click],
        render: Callable[[ClickSession], T],
        cancel: threading.Event | None = None,
    ) -> T:
        """Bring ``key``'s session to exactly ``clicks`` and return ``render(session)`` (under its lock).

        ``cancel`` set (the client left): :class:`ClientGoneError` before the next decoder run; the clicks
        replayed so far stay, so a retry of the same request continues from there.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.session.meta.model_id != features.meta.model_id:
                entry = self._entries[key] = _Replay(ClickSession(self.decoder, features, undo_cache=UNDO_CACHE))
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        with entry.lock:
            session = entry.session
            done = [(c.y, c.x, c.is_positive) for c in session.clicks]
            common = 0
            while common < min(len(done), len(clicks)) and done[common] == clicks[common]:
                common += 1
            for _ in range(len(session.clicks) - common):
                session.undo()
            for y, x, positive in clicks[common:]:
                if cancel is not None and cancel.is_set():
                    raise ClientGoneError("the client disconnected")
                session.add_click(y, x, positive)
            return render(session)
