"""This process's peak resident memory over a span of work (each compile stage's ``peak_rss_mb``).

Linux keeps a high-water mark (``VmHWM`` in /proc/self/status) but only one per process, and resetting it
(/proc/self/clear_refs) would also reset what ``getrusage``/``wait4`` report to whoever runs us (a benchmark,
``/usr/bin/time``, a batch driver). So it is only read: a span whose work raised the process's high-water mark
peaked exactly there; a span below an earlier peak gets the highest resident size a sampler thread saw while it
ran. The thread reads /proc/self/statm (a few microseconds) every ``interval_s``, sleeping in between without
the GIL; short spikes below the earlier peak can be missed by at most one interval. Where /proc is missing (not
Linux) every peak is None.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading

_MIB = 1024 * 1024
INTERVAL_S = 0.005


def _statm_rss(fd: int) -> int:
    """Resident bytes from an open /proc/self/statm (its second field, in pages)."""
    return int(os.pread(fd, 128, 0).split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_freed_memory() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Large models free hundreds of MiB in pieces (protobuf arenas, numpy buffers) that glibc keeps mapped
    below live allocations; without a trim the next stage starts with all of it still resident."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols: glibc's, where it is glibc
    except (OSError, AttributeError, TypeError):
        return None


def high_water_bytes() -> int | None:
    """The process's peak resident bytes so far (VmHWM), or None where /proc/self/status has none."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakSampler:
    """``with PeakSampler() as peaks:`` then ``peaks.start()`` / ``peaks.stop() -> MiB | None`` around each span."""

    def __init__(self, interval_s: float = INTERVAL_S):
        self.interval_s = interval_s
        self._fd: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # start() resets what the thread raises
        self._thread: threading.Thread | None = None
        self._seen = 0  # the highest resident bytes sampled since start()
        self._hwm_before: int | None = None

    def __enter__(self) -> PeakSampler:
        try:
            self._fd = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            return self
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = _statm_rss(self._fd)
            with self._lock:
                self._seen = max(self._seen, rss)

    def start(self) -> None:
        """Begin a span: forget what was sampled before it."""
        self._hwm_before = high_water_bytes()
        with self._lock:
            self._seen = _statm_rss(self._fd) if self._fd is not None else 0

    def stop(self) -> float | None:
        """The span's peak resident size in MiB (None without /proc)."""
        if self._fd is None or self._hwm_before is None:
            return None
        hwm = high_water_bytes()
        if hwm is not None and hwm > self._hwm_before:  # this span set the process's record: exact
            return hwm / _MIB
        with self._lock:
            return max(self._seen, _statm_rss(self._fd)) / _MIB
