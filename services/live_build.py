"""The build a serving replica answers from, following `current` as builds are published.

    tailor build / publish / rollback ──switches──▶ artifacts/current
    LiveBuild (one per replica) ──polls the link──▶ loads the new build beside the old one
                                                   ──then──▶ new requests take the new one

A request takes one build when it starts and is served by it end to end: a call to another
deployment names that build (`build_id` in the request), so a publish never mixes two builds
in one answer and never fails a request. The last `keep` builds stay loaded for requests
pinned to them; an older one still on disk is loaded again when asked for.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Generic, TypeVar

from services.artifacts import CURRENT, Artifacts, current_build_dir, kept_build_path
from services.config import IndexConfig
from services.errors import NotFound, excerpt

log = logging.getLogger(__name__)
State = TypeVar("State")


class LiveBuild(Generic[State]):
    """`load(artifacts)` turns a build into what this replica serves from (e.g. a
    RecommendationFlow); it runs once per build, in a background thread, and should touch
    everything a request reads so that the first request after a switch is not slow."""

    def __init__(
        self,
        artifacts_dir: Path,
        index_config: IndexConfig,
        load: Callable[[Artifacts], State],
        poll_s: float = 1.0,
        keep: int = 2,
    ):
        self.artifacts_dir = Path(artifacts_dir)
        self.index_config = index_config
        self._load = load
        self._keep = max(keep, 1)
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, State] = OrderedDict()
        self._loading: dict[str, Future] = {}
        # One loader thread: two builds loading at once would double the memory spike.
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="build-loader")
        first = Artifacts.open(self.artifacts_dir, index_config)
        self._loaded[first.build_id] = load(first)
        self._current_id = first.build_id
        self._link = self._read_link()
        self._failed_link: str | None = None
        self._stop = threading.Event()
        if poll_s > 0:
            threading.Thread(target=self._follow, args=(poll_s,), name="build-follower", daemon=True).start()

    # --- what requests use -----------------------------------------------------------------

    @property
    def current_id(self) -> str:
        return self._current_id

    @property
    def current(self) -> State:
        with self._lock:
            return self._loaded[self._current_id]

    def pinned(self, build_id: str) -> tuple[str, State]:
        """(build_id, state) of a build already loaded: the current one for an empty id.
        Raises KeyError when it is not loaded (use `get`)."""
        with self._lock:
            build_id = build_id or self._current_id
            return build_id, self._loaded[build_id]

    async def get(self, build_id: str = "", field: str = "build_id") -> tuple[str, State]:
        """The named build (the current one when empty), loading it first if this replica
        does not hold it: a request pinned to a build another replica switched to first."""
        try:
            return self.pinned(build_id)
        except KeyError:
            pass
        return build_id, await asyncio.wrap_future(self._load_in_background(build_id, field))

    def loaded_ids(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def loaded(self) -> list[State]:
        """Every build this replica holds (to drop what they cache about a forgotten shopper)."""
        with self._lock:
            return list(self._loaded.values())

    def close(self) -> None:
        self._stop.set()
        self._loader.shutdown(wait=False, cancel_futures=True)

    # --- following the link ------------------------------------------------------------------

    def _read_link(self) -> str:
        try:
            return os.readlink(self.artifacts_dir / CURRENT)
        except OSError:
            return ""

    def _follow(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            link = self._read_link()
            if link and link != self._link and link != self._failed_link:
                self.switch_now()

    def switch_now(self) -> str:
        """Load the build `current` points at (if not loaded yet) and make it this replica's
        current one; returns its id. A build that fails to load is logged and not retried
        until the link changes again; the replica keeps serving the build it has."""
        link = self._read_link()
        try:
            build_id = Artifacts(current_build_dir(self.artifacts_dir), self.index_config).build_id
            self._load_in_background(build_id, "build_id").result()
        except Exception:  # noqa: BLE001 - a bad build must never stop the replica serving the old one
            log.exception("could not load the build %s is now published as; still serving %s", link, self._current_id)
            self._failed_link = link
            return self._current_id
        with self._lock:
            self._current_id = build_id
            self._loaded.move_to_end(build_id)
            self._link = link
            self._evict()
        log.info("now serving build %s", build_id)
        return build_id

    def _load_in_background(self, build_id: str, field: str) -> Future:
        with self._lock:
            if build_id in self._loaded:
                done: Future = Future()
                done.set_result(self._loaded[build_id])
                return done
            if build_id not in self._loading:
                path = kept_build_path(self.artifacts_dir, build_id)
                if path is None:
                    raise NotFound(field, f"build {excerpt(build_id, 40)} is not on this server (builds kept: see `tailor builds`)")
                self._loading[build_id] = self._loader.submit(self._load_build, build_id, path)
            return self._loading[build_id]

    def _load_build(self, build_id: str, path: Path) -> State:
        try:
            state = self._load(Artifacts(path, self.index_config))
            # A build lives as long as it is served: kept out of the collector's full scans,
            # whose pauses over its objects would show as tail latency (Serve freezes what a
            # replica's constructor made the same way; a build loaded later needs it again).
            gc.freeze()
            with self._lock:
                self._loaded[build_id] = state
                self._loaded.move_to_end(build_id)
                self._evict()
            return state
        finally:
            with self._lock:
                self._loading.pop(build_id, None)

    def _evict(self) -> None:
        """Keep the newest `keep` builds loaded (the current one always)."""
        while len(self._loaded) > self._keep:
            oldest = next(b for b in self._loaded if b != self._current_id)
            del self._loaded[oldest]
