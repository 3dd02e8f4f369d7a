"""golfmodel.q2bn: the Q2BN v1 artifact (SPEC §5, byte layout in docs/q2bn.md), packing and size checks.

format.py    write_q2bn / read_q2bn, TensorRecord, Q2BNError (the container)
artifact.py  pack_model / load_model / export_view (model ⇄ records)
int8zlib.py  the gpt-int8 arm's baseline export (int8 per row + zlib level 9)
size.py      size_check: artifact + shipped code bytes against the budget
cli.py       `golf inspect FILE`
"""
