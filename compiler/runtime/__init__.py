"""Load, feed, run and benchmark any artifact the compiler produces.

``load`` (load.py) picks a runner by the file's content; ``feeds`` adapts what a user has to what the artifact
takes, by one set of rules; ``run`` runs it once; ``bench`` times it.
"""
from __future__ import annotations

from ..artifacts import ONNX_MODEL, ORT_FORMAT, TENSORRT_PLAN
from ..backends.onnxruntime import OrtRunner, ort_session
from ..common.arrays import cast, load_arrays
from .bench import MEASURED, BenchResult, benchmark, check_bench_counts, feed_batch
from .feeds import PreparedFeed, prepare_feed
from .load import detect_format, load
from .run import RunResult, output_stats, random_feed, read_feed, run

__all__ = ["MEASURED", "ONNX_MODEL", "ORT_FORMAT", "TENSORRT_PLAN", "BenchResult", "OrtRunner", "PreparedFeed",
           "RunResult", "benchmark", "cast", "check_bench_counts", "detect_format", "feed_batch", "load", "load_arrays",
           "ort_session", "output_stats", "prepare_feed", "random_feed", "read_feed", "run"]
