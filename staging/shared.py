"""State every worker process must agree on, in shared memory created before the workers fork.

- the live-session table (so the session quota counts all processes, and a logout anywhere ends a session),
- per-user upload usage (the 100 MiB quota holds across processes),
- the runtime settings changed through the admin route (faults, news switch, quota), versioned,
- per-worker counters for /__admin/stats.

Fixed-size arrays only: memory is decided at start and never grows.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import time
from multiprocessing.sharedctypes import RawArray

STATS = ("requests", "status_2xx", "status_3xx", "status_4xx", "status_5xx", "resets", "bytes_out",
         "logins", "login_failures", "quota_refusals", "uploads_bytes")
_BLOB = 1 << 18  # room for the runtime settings as JSON


class SharedState:
    def __init__(self, slots: int, n_users: int, workers: int, runtime: dict):
        ctx = multiprocessing.get_context("fork")
        self.slots = slots
        self.expiry = RawArray("d", slots)
        self.sid = RawArray("q", slots)
        # head: live sessions, scan cursor, quota (-1 = none), last full sweep (ms)
        self.head = RawArray("q", 4)
        self.lock = ctx.Lock()
        self.usage = RawArray("q", max(1, n_users))
        self.usage_epoch = RawArray("q", 1)
        self.usage_lock = ctx.Lock()
        self.blob = RawArray("c", _BLOB)
        self.meta = RawArray("q", 2)  # length, version
        self.blob_lock = ctx.Lock()
        self.stats = RawArray("q", max(1, workers) * len(STATS))
        self.head[2] = -1
        self.put_runtime(runtime)

    # -- runtime settings ------------------------------------------------------------------------------
    def put_runtime(self, runtime: dict) -> None:
        data = json.dumps(runtime).encode()
        if len(data) > _BLOB:
            raise ValueError(f"runtime settings larger than {_BLOB} bytes")
        with self.blob_lock:
            self.blob[: len(data)] = data
            self.meta[0] = len(data)
            q = runtime.get("session_quota")
            self.head[2] = -1 if q is None else int(q)
            self.meta[1] += 1

    def runtime_version(self) -> int:
        return self.meta[1]

    def get_runtime(self) -> tuple[int, dict]:
        with self.blob_lock:
            return self.meta[1], json.loads(bytes(self.blob[: self.meta[0]]))

    # -- sessions ----------------------------------------------------------------------------------------
    def quota_full(self, now: float) -> bool:
        quota = self.head[2]
        if quota < 0 or self.head[0] < quota:
            return False
        with self.lock:
            self._sweep_if_due(now)
            return self.head[0] >= quota

    def open_session(self, now: float, idle_s: float) -> tuple[int, int] | None:
        """Reserve a slot: (slot, sid), or None when the quota (or the table) is full."""
        with self.lock:
            quota = self.head[2]
            if quota >= 0 and self.head[0] >= quota:
                self._sweep_if_due(now)
                if self.head[0] >= quota:
                    return None
            slots, sid, exp = self.slots, self.sid, self.expiry
            cursor = self.head[1]
            for n in range(slots):
                j = (cursor + n) % slots
                if sid[j] == 0:
                    self.head[0] += 1
                    break
                if exp[j] < now:  # reclaim an idle session: live count unchanged
                    break
            else:
                return None
            new = int.from_bytes(os.urandom(8), "little") & 0x7FFF_FFFF_FFFF_FFFF or 1
            sid[j] = new
            exp[j] = now + idle_s
            self.head[1] = j + 1
            return j, new

    def session_valid(self, slot: int, sid: int, now: float) -> bool:
        return 0 <= slot < self.slots and self.sid[slot] == sid and self.expiry[slot] >= now

    def touch(self, slot: int, sid: int, until: float) -> None:
        if self.sid[slot] == sid:
            self.expiry[slot] = until

    def close_session(self, slot: int, sid: int) -> None:
        with self.lock:
            if 0 <= slot < self.slots and self.sid[slot] == sid:
                self.sid[slot] = 0
                self.expiry[slot] = 0.0
                self.head[0] -= 1

    def live_sessions(self, now: float) -> int:
        with self.lock:
            self._sweep_if_due(now)
            return self.head[0]

    def _sweep_if_due(self, now: float) -> None:
        """Free idle sessions; O(slots), so at most once a second (caller holds the lock)."""
        ms = int(now * 1000)
        if ms - self.head[3] < 1000:
            return
        self.head[3] = ms
        sid, exp, freed = self.sid, self.expiry, 0
        for j in range(self.slots):
            if sid[j] and exp[j] < now:
                sid[j] = 0
                freed += 1
        self.head[0] -= freed

    # -- upload quota --------------------------------------------------------------------------------------
    def _roll_window(self, window_s: float | None, now: float | None) -> None:
        """Start a new quota window when due: everyone's usage goes back to zero (caller holds the lock)."""
        if window_s:
            epoch = int((now or time.time()) // window_s)
            if epoch != self.usage_epoch[0]:
                ctypes.memset(self.usage, 0, ctypes.sizeof(self.usage))
                self.usage_epoch[0] = epoch

    def reserve_upload(self, user_no: int, nbytes: int, quota: int, window_s: float | None = None,
                       now: float | None = None) -> bool:
        with self.usage_lock:
            self._roll_window(window_s, now)
            if self.usage[user_no] + nbytes > quota:
                return False
            self.usage[user_no] += nbytes
            return True

    def upload_usage(self, user_no: int, window_s: float | None = None, now: float | None = None) -> int:
        with self.usage_lock:
            self._roll_window(window_s, now)
            return self.usage[user_no]

    # -- stats -----------------------------------------------------------------------------------------------
    def publish_stats(self, worker: int, counters: dict) -> None:
        base = worker * len(STATS)
        for k, name in enumerate(STATS):
            self.stats[base + k] = counters.get(name, 0)

    def total_stats(self, now: float | None = None) -> dict:
        n = len(STATS)
        workers = len(self.stats) // n
        totals = {name: sum(self.stats[w * n + k] for w in range(workers)) for k, name in enumerate(STATS)}
        totals["live_sessions"] = self.live_sessions(now or time.time())
        q = self.head[2]
        totals["session_quota"] = None if q < 0 else q
        return totals
