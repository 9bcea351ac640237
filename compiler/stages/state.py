"""What one stage hands the next: a frozen value, replaced (never changed) by each stage.

It holds the settings the later stages run with, every artifact so far with its specs, op histogram and interface
change (``OnnxArtifact.info``), the shapes and samples the seams use, and what the report will say (notices, stage
notes, intermediate files). ``compiler/pipeline.py`` fills the report from it, in one place.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..artifacts import EngineArtifact, ModelInfo, OnnxArtifact
from ..config import CompileConfig


@dataclass(frozen=True)
class State:
    cfg: CompileConfig  # after inspect: --input-shapes without the inputs a profile lets vary; after a cut, its own
    out: Path
    workdir: Path
    source: Path  # what the user gave (a Keras file is exported to a SavedModel first: ``model.path``)
    model: ModelInfo | None = None  # inspect's: the SavedModel or ONNX model compiled
    backend: str | None = None
    backend_notice: str | None = None
    profiles: tuple = ()  # optimization profiles, in the model's layout
    profile_source: str | None = None
    shapes: dict = field(default_factory=dict)  # validation shapes of the model's inputs
    given_shapes: dict = field(default_factory=dict)  # --input-shapes as the user gave them (frozen in the engine)
    index_ranges: dict = field(default_factory=dict)  # input -> its table's range, as reported (index_ranges.py)
    exported: OnnxArtifact | None = None  # the export (the input itself when it is ONNX)
    before_passes: OnnxArtifact | None = None  # what the passes start from: the export, or its cut
    pass_shapes: dict = field(default_factory=dict)  # validation shapes of before_passes's inputs
    optimized: OnnxArtifact | None = None  # its ``change``: how its IO differs from the export's
    pass_records: tuple = ()
    trt: object = None  # passes.trt_support.TrtCheck of the optimized graph
    samples: object = None  # --data (compiler.common.samples.Samples) in before_passes's interface, loaded once
    lowered: OnnxArtifact | None = None  # the fp16/bf16/int8 graph (precision stage)
    precision: object = None  # compiler.precision.PrecisionResult
    calib_cache: Path | None = None
    engine_path: Path | None = None  # where build writes (a temporary file beside ``out``)
    engine: EngineArtifact | None = None
    seams: tuple = ()  # SeamResult, in pipeline order
    localization: dict | None = None  # a failed onnx→optimized seam: the first divergent node
    localization_clause: str = ""
    notices: tuple[str, ...] = ()
    notes: dict = field(default_factory=dict)  # stage -> the note its report record shows
    skipped: frozenset = frozenset()  # stages that had nothing to do (their note says why)
    intermediates: dict = field(default_factory=dict)  # report key -> file

    @property
    def engine_source(self) -> OnnxArtifact:
        """The graph the engine is built from: the lowered one, else the optimized one."""
        return self.lowered or self.optimized

    @property
    def engine_shapes(self) -> dict:
        """Validation shapes in the engine's layout (inputs the passes made NCHW are transposed)."""
        change = self.optimized.change
        return {k: change.candidate_shape(k, v) for k, v in self.pass_shapes.items()}

    def but(self, *, notices=(), notes=None, intermediates=None, **changes) -> State:
        """This state with ``changes``, ``notices`` appended and ``notes``/``intermediates`` added."""
        return replace(self, notices=self.notices + tuple(notices), notes={**self.notes, **(notes or {})},
                       intermediates={**self.intermediates, **(intermediates or {})}, **changes)

    def skip(self, stage: str, why: str) -> State:
        return self.but(notes={stage: why}, skipped=self.skipped | {stage})
