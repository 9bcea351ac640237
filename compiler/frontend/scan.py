"""Scan a SavedModel's graph for ops that touch files or run Python, without executing anything.

The idea of ``saved_model_cli scan``, with a wider denylist. Loading a
SavedModel runs its restore function, and calling a signature runs whatever
ops it holds, so this runs on the parsed protobuf before TensorFlow loads
the model. It is a guard against models that read, write or execute
outside their own checkpoint, not a sandbox: a deliberately hostile model
should not be loaded on a machine you care about at all.

Checkpoint ops (SaveV2, RestoreV2, ...) are expected in every SavedModel: they
are allowed only where the SavedModel's own saver uses them, in functions that
are reachable only from the saver's save/restore nodes (TF2) or under the
saver's name scope (TF1). Anywhere else, for example inside a serving
function, they are flagged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# op type -> why it is refused. Reading the model's own assets through lookup
# table initialisers (InitializeTableFromTextFile*) is allowed: the file name
# comes from the SavedModel's assets directory.
DENYLIST: dict[str, str] = {
    **dict.fromkeys(("PyFunc", "PyFuncStateless", "EagerPyFunc"), "runs arbitrary Python code"),
    **dict.fromkeys(("ReadFile", "MatchingFiles", "ImmutableConst", "WholeFileReader", "WholeFileReaderV2",
                     "TextLineReader", "TextLineReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2",
                     "TFRecordReader", "TFRecordReaderV2", "LMDBReader", "TextLineDataset", "TFRecordDataset",
                     "TFRecordDatasetV2", "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "LoadDataset",
                     "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset", "LMDBDataset",
                     "ExperimentalLMDBDataset", "SnapshotDatasetReader"), "reads files"),
    **dict.fromkeys(("WriteFile", "SaveDataset", "SaveDatasetV2", "DatasetToTFRecord",
                     "ExperimentalDatasetToTFRecord", "CreateSummaryFileWriter", "WriteSummary", "WriteScalarSummary",
                     "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
                     "WriteRawProtoSummary", "DebugIdentityV2", "DebugIdentityV3"), "writes files"),
    **dict.fromkeys(("Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
                     "ShardedFilename", "ShardedFilespec"), "reads or writes checkpoints outside the model's saver"),
}
CHECKPOINT_OPS = {op for op, why in DENYLIST.items() if why.startswith("reads or writes checkpoints")}


@dataclass(frozen=True)
class Finding:
    op: str
    node: str
    function: str | None  # None: the main graph
    reason: str

    def text(self) -> str:
        where = f"in function '{self.function}'" if self.function else "in the main graph"
        return f"{self.op} (node '{self.node}' {where}: {self.reason})"


@dataclass
class ScanResult:
    findings: list[Finding] = field(default_factory=list)
    ops_scanned: int = 0

    @property
    def safe(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        if self.safe:
            return f"safe: no denylisted ops among {self.ops_scanned} nodes"
        shown = "; ".join(f.text() for f in self.findings[:3])
        more = f"; and {len(self.findings) - 3} more" if len(self.findings) > 3 else ""
        return f"UNSAFE: {shown}{more}"

    @classmethod
    def from_json(cls, data: dict) -> "ScanResult":
        return cls([Finding(**f) for f in data["findings"]], data["ops_scanned"])

    def to_json(self) -> dict:
        return {"safe": self.safe, "ops_scanned": self.ops_scanned,
                "findings": [f.__dict__ for f in self.findings]}


def _called(node) -> list[str]:
    names = []
    for attr in node.attr.values():
        if attr.HasField("func"):
            names.append(attr.func.name)
        names.extend(f.name for f in attr.list.func)
    return names


def _reachable(roots: list[str], calls: dict[str, list[str]]) -> set[str]:
    seen, stack = set(), list(roots)
    while stack:
        fn = stack.pop()
        if fn in seen or fn not in calls:
            continue
        seen.add(fn)
        stack.extend(calls[fn])
    return seen


def _flag(node, function: str | None) -> Finding | None:
    if node.op in DENYLIST:
        return Finding(node.op, node.name, function, DENYLIST[node.op])
    if node.op == "PrintV2":
        stream = node.attr["output_stream"].s.decode(errors="replace") if "output_stream" in node.attr else ""
        if stream.startswith("file://"):
            return Finding(node.op, node.name, function, f"writes to {stream}")
    return None


def scan_meta_graph(meta) -> ScanResult:
    """Scan one MetaGraphDef (its main graph and every library function)."""
    graph = meta.graph_def
    calls = {f.signature.name: [c for n in f.node_def for c in _called(n)] for f in graph.library.function}
    saver_nodes = {t.split(":")[0] for t in (meta.saver_def.save_tensor_name, meta.saver_def.restore_op_name) if t}
    saver_scope = meta.saver_def.restore_op_name.rpartition("/")[0] + "/" if "/" in meta.saver_def.restore_op_name \
        else None
    from_saver = _reachable([c for n in graph.node if n.name in saver_nodes for c in _called(n)], calls)
    from_rest = _reachable([c for n in graph.node if n.name not in saver_nodes for c in _called(n)], calls)
    checkpoint_only = from_saver - from_rest

    result = ScanResult()
    for node in graph.node:
        result.ops_scanned += 1
        finding = _flag(node, None)
        in_saver = node.name in saver_nodes or (saver_scope is not None and node.name.startswith(saver_scope))
        if finding and not (node.op in CHECKPOINT_OPS and in_saver):
            result.findings.append(finding)
    for fn in graph.library.function:
        for node in fn.node_def:
            result.ops_scanned += 1
            finding = _flag(node, fn.signature.name)
            if finding and not (node.op in CHECKPOINT_OPS and fn.signature.name in checkpoint_only):
                result.findings.append(finding)
    return result
