"""Old path of ``passes.precision.to_fp16``, kept for users' imports."""
from .precision._common import export, node_precision, replace_graph, split_keep  # noqa: F401
from .precision.to_fp16 import DATA_MOVEMENT, KEEP_FP32, ToFp16, converter_block_list, default_keep_ops  # noqa: F401
