"""Benchmark an artifact: warm-up runs, then timed host-to-host runs of ``runner.infer`` on one prepared feed."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from .feeds import PreparedFeed, prepare_feed

MEASURED = "host-to-host: feed copy, inference, output copy"


def check_bench_counts(warmup: int, iterations: int) -> None:
    if warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {warmup}", "pass a non-negative number of warm-up runs")
    if iterations < 1:
        raise ConfigError(f"--iterations must be at least 1, got {iterations}", "pass a positive number of timed runs")


def feed_batch(feed: dict) -> int:
    """The batch a feed holds: the leading dimension of its first input with one (1 for scalars only)."""
    for arr in feed.values():
        if np.ndim(arr) > 0:
            return int(np.shape(arr)[0])
    return 1


@dataclass(frozen=True)
class BenchResult:
    artifact: str
    format: str
    backend: str
    batch: int
    warmup: int
    latencies_ms: tuple[float, ...]  # one per timed run
    input_shapes: dict = field(default_factory=dict)  # what the artifact was fed: name -> shape
    notes: tuple[str, ...] = ()
    threads: dict | None = None  # onnxruntime: {"intra_op_num_threads": N (0 = default), "cpus": N}; OpenVINO:
    # {"inference_num_threads": N, "streams": N, "mode": "latency"|"throughput"}
    measured: str = MEASURED

    @property
    def iterations(self) -> int:
        return len(self.latencies_ms)

    @property
    def total_s(self) -> float:
        return float(sum(self.latencies_ms)) / 1000.0

    @property
    def latency(self) -> dict[str, float]:
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        return {"mean": float(lat.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
                "min": float(lat.min()), "max": float(lat.max())}

    @property
    def throughput(self) -> float:
        """Samples per second: batch × iterations / the timed runs' total time."""
        return self.batch * self.iterations / self.total_s if self.total_s > 0 else float("inf")

    def threads_text(self) -> str:
        if self.threads is None:
            return ""
        if "inference_num_threads" in self.threads:
            t = self.threads
            return f"OpenVINO threads: {t['inference_num_threads']}, streams: {t['streams']}, mode: {t['mode']}"
        n = self.threads["intra_op_num_threads"]
        return (f"intra-op threads: {'onnxruntime default (one per physical core)' if n == 0 else n}, "
                f"{self.threads['cpus']} CPU(s) available")

    def to_json(self) -> dict:
        return {"artifact": self.artifact, "format": self.format, "backend": self.backend, "batch": self.batch,
                "warmup": self.warmup, "iterations": self.iterations,
                "input_shapes": {k: list(v) for k, v in self.input_shapes.items()}, "notes": list(self.notes),
                "measured": self.measured, "threads": self.threads, "latency_ms": self.latency,
                "throughput_samples_per_s": self.throughput,
                "throughput_inferences_per_s": self.iterations / self.total_s if self.total_s > 0 else float("inf"),
                "total_s": self.total_s}


def benchmark(runner, feed, warmup: int = 10, iterations: int = 100) -> BenchResult:
    """Time ``runner.infer`` on one feed: ``warmup`` untimed runs, then ``iterations`` timed with perf_counter.

    ``feed`` is a user's feed (adapted by ``prepare_feed``, once, outside the
    timing) or a ``PreparedFeed``. Each timed run is one ``infer`` call:
    host to host, so it includes copying the feed in and the outputs out.
    """
    check_bench_counts(warmup, iterations)
    prepared = feed if isinstance(feed, PreparedFeed) else prepare_feed(runner.inputs, feed,
                                                                       getattr(runner, "interface", None))
    data = prepared.feed
    for _ in range(warmup):
        runner.infer(data)
    times = []
    clock = time.perf_counter
    for _ in range(iterations):
        start = clock()
        runner.infer(data)
        times.append((clock() - start) * 1000.0)
    return BenchResult(artifact=str(getattr(runner, "path", "")), format=runner.format, backend=runner.backend,
                       batch=feed_batch(data), warmup=warmup, latencies_ms=tuple(times),
                       input_shapes={k: tuple(v.shape) for k, v in data.items()}, notes=prepared.notes,
                       threads=getattr(runner, "threads", None))
