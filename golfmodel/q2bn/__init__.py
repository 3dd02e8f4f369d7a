"""golfmodel.q2bn: the Q2BN artifact (SPEC §5, byte layout in docs/q2bn.md; v2 written, v1 and v2 read), packing, size checks.

format.py     write_q2bn / read_q2bn, Q2BNError (the container: prefix, header, framing, checks)
records.py    TensorRecord, Kind, encode_* / decode_* (record fields ⇄ QuantSpec; payloads are the quant kinds')
artifact.py   pack_model / load_model / export_view (model ⇄ records)
int8zlib.py   the int8 plan's baseline export (int8 per row + zlib level 9)
container.py  pack_artifact / load_artifact: the plan's container, any artifact by its bytes
size.py       size_check: artifact + shipped code bytes against the budget
cli.py        `golf inspect FILE`

`golfmodel.q2bn.load_model` is `golfmodel.q2bn.artifact.load_model` (imported on first use).
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("load_model", "pack_model", "export_view"):
        from golfmodel.q2bn import artifact

        return getattr(artifact, name)
    if name in ("load_artifact", "pack_artifact"):
        from golfmodel.q2bn import container

        return getattr(container, name)
    raise AttributeError(f"module 'golfmodel.q2bn' has no attribute {name!r}")
