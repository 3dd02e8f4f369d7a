"""golfmodel.eval: the scorer — bytes per token (`ByteTable`), bits per byte (`score`), decoded-text audit."""

from golfmodel.eval.bpb import AuditError, BpbResult, check_audit, plan_windows, score
from golfmodel.eval.bytes import ByteTable, decoded_bytes, decoded_bytes_span, make_audit

__all__ = [
    "AuditError",
    "BpbResult",
    "ByteTable",
    "check_audit",
    "decoded_bytes",
    "decoded_bytes_span",
    "make_audit",
    "plan_windows",
    "score",
]
