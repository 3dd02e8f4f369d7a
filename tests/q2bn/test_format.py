"""Q2BN v1 container: round trips, corruption and truncation detection, field checks, fuzzing (SPEC §5)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from golfmodel.q2bn.format import (
    MAGIC,
    PREFIX,
    VERSION,
    ZSTD_MAGIC,
    Kind,
    Q2BNError,
    TensorRecord,
    compress_raw,
    decode,
    decode_all,
    decode_int8,
    decode_q2,
    dumps,
    dumps_raw,
    encode,
    encode_alias,
    encode_fp16,
    encode_fp32,
    encode_int8,
    encode_q2,
    loads,
    parse_raw,
    read_q2bn,
    write_q2bn,
)
from golfmodel.quant.int8 import int8_view
from golfmodel.quant.q2 import dequant, fit_tau, symbols

HEADER: dict[str, Any] = {"model": {"d": 4}, "tokenizer": {"id": "t", "vocab_size": 8}, "settings_hash": "h"}


def _records() -> list[TensorRecord]:
    """One small record of every kind (q2 with a width not divisible by 4)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 6, generator=g)
    tau = fit_tau(w)
    return [
        encode_int8("emb.weight", torch.randn(4, 3, generator=g)),
        encode_q2("blocks.0.w.weight", symbols(w, tau), tau),
        encode_fp16("blocks.0.norm", torch.randn(5, generator=g)),
        encode_fp32("blocks.0.log_dt", torch.randn(2, generator=g)),
        encode_alias("head.weight", 0, (4, 3)),
    ]


def _record_bytes(
    name: str, kind: int, shape: tuple[int, ...], payload: bytes, payload_len: int | None = None
) -> bytes:
    """A record laid out by hand, so that invalid field combinations can be written."""
    n = name.encode()
    dims = struct.pack(f"<{len(shape)}I", *shape)
    plen = len(payload) if payload_len is None else payload_len
    return (
        struct.pack("<H", len(n))
        + n
        + struct.pack("<BB", kind, len(shape))
        + dims
        + struct.pack("<Q", plen)
        + payload
    )


def _raw(body: bytes, count: int, version: int = 1, **header: Any) -> bytes:
    """A decompressed stream with a correct body hash around a hand-made body (v1 record layout by default)."""
    head = {**HEADER, "tensor_count": count, "body_sha256": hashlib.sha256(body).hexdigest(), **header}
    text = json.dumps(head).encode()
    return PREFIX.pack(MAGIC, version, len(text)) + text + body


def test_round_trip_all_kinds(tmp_path: Path) -> None:
    """Every kind reads back as the same record, and the header keeps the caller's fields."""
    path = tmp_path / "a.q2bn"
    records = _records()
    info = write_q2bn(path, HEADER, records)
    header, back = read_q2bn(path)
    assert back == records
    assert {k: header[k] for k in HEADER} == HEADER
    assert header["tensor_count"] == len(records)
    assert info.compressed_bytes == path.stat().st_size


def test_decoded_tensors_match_their_rounding() -> None:
    """decode() gives the dequantised q2 weight, the int8 view, and fp16/fp32 values; aliases share a tensor."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, 9, generator=g)
    tau = fit_tau(w)
    v = torch.randn(7, generator=g)
    assert torch.equal(decode(encode("q", w, Kind.Q2_ROWS, tau=tau)), dequant(symbols(w, tau), tau))
    assert torch.equal(decode(encode("i", w, Kind.INT8_ROWS)), int8_view(w))
    assert torch.equal(decode(encode("h", v, Kind.FP16)), v.half().float())
    assert torch.equal(decode(encode("f", v, Kind.FP32)), v)
    state = decode_all(_records())
    assert state["head.weight"] is state["emb.weight"]


def test_q2_record_layout() -> None:
    """A q2 payload is out × fp16 τ followed by out × ceil(in/4) packed bytes."""
    sym = torch.tensor([[0, 1, 2, 3, 3]], dtype=torch.uint8)
    rec = encode_q2("w", sym, torch.tensor([0.5]))
    assert rec.payload == struct.pack("<e", 0.5) + bytes([0b00011110, 0b10000000])
    back_sym, back_tau = decode_q2(rec)
    assert torch.equal(back_sym, sym) and back_tau.tolist() == [0.5]


def test_int8_record_layout() -> None:
    """An int8 payload is out × fp16 scale followed by the int8 rows."""
    rec = encode_int8("e", torch.tensor([[127.0, -1.0]]))
    assert rec.payload == struct.pack("<e", 1.0) + bytes([127, 255])
    q, scale = decode_int8(rec)
    assert q.tolist() == [[127, -1]] and scale.tolist() == [1.0]


def test_file_is_one_zstd_frame_with_checksum(tmp_path: Path) -> None:
    """On disk the artifact starts with zstd's magic and its frame has a checksum and a content size."""
    path = tmp_path / "a.q2bn"
    write_q2bn(path, HEADER, _records())
    data = path.read_bytes()
    assert data[:4] == ZSTD_MAGIC
    params = zstandard.get_frame_parameters(data)
    assert params.has_checksum
    assert params.content_size == len(zstandard.ZstdDecompressor().decompress(data))


def test_writes_are_deterministic() -> None:
    """The same header and records compress to the same bytes."""
    assert dumps(HEADER, _records()) == dumps(HEADER, _records())


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    """A write that fails validation leaves the existing file untouched and no temporary file behind."""
    path = tmp_path / "a.q2bn"
    write_q2bn(path, HEADER, _records())
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_q2bn(path, HEADER, [encode_alias("x", 0, (1,))])  # alias of nothing earlier
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.q2bn"]


def test_truncated_file_rejected_at_every_length() -> None:
    """Every proper prefix of an artifact raises Q2BNError."""
    data = dumps(HEADER, _records())
    for cut in range(len(data)):
        with pytest.raises(Q2BNError):
            loads(data[:cut], "cut")


def test_single_bit_flips_never_load_silently() -> None:
    """Every single-bit flip of the compressed file raises Q2BNError or decodes to the identical content."""
    data = dumps(HEADER, _records())
    original = loads(data)
    rejected = 0
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        try:
            got = loads(bytes(flipped), "flip")
        except Q2BNError:
            rejected += 1
            continue
        # a few bits zstd does not interpret (an unused header bit, slack in entropy tables) decode the same
        assert got == original, f"bit {i} changed the content without an error"
    assert rejected > 0.95 * len(data) * 8


def test_body_flip_recompressed_is_caught_by_sha256() -> None:
    """Flipping any body byte and re-compressing (a valid frame) fails the header's body sha256."""
    raw = dumps_raw(HEADER, _records())
    body_start = PREFIX.size + PREFIX.unpack_from(raw)[2]
    for i in range(body_start, len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        with pytest.raises(Q2BNError, match="sha256"):
            loads(compress_raw(bytes(bad)), "body-flip")


def test_wrong_magic_rejected() -> None:
    """A stream that does not start with Q2BN is rejected, naming the magic."""
    raw = dumps_raw(HEADER, _records())
    with pytest.raises(Q2BNError, match="magic"):
        loads(compress_raw(b"Q2BM" + raw[4:]), "x")


def test_wrong_version_rejected() -> None:
    """A version other than 1 or 2 is rejected, naming the version."""
    raw = bytearray(dumps_raw(HEADER, _records()))
    assert raw[4] == VERSION == 2
    raw[4] = 3
    with pytest.raises(Q2BNError, match="version 3"):
        loads(compress_raw(bytes(raw)), "x")


def test_uncompressed_stream_rejected() -> None:
    """A bare (uncompressed) Q2BN stream is not an artifact."""
    with pytest.raises(Q2BNError, match="zstd"):
        loads(dumps_raw(HEADER, _records()), "x")


def test_frame_without_checksum_rejected() -> None:
    """A zstd frame written without its checksum is refused."""
    raw = dumps_raw(HEADER, _records())
    data = zstandard.ZstdCompressor(level=3, write_checksum=False).compress(raw)
    with pytest.raises(Q2BNError, match="checksum"):
        loads(data, "x")


def test_errors_name_the_file(tmp_path: Path) -> None:
    """Reading a bad file raises an error that names its path."""
    path = tmp_path / "bad.q2bn"
    path.write_bytes(b"\x28\xb5\x2f\xfd garbage")
    with pytest.raises(Q2BNError, match="bad.q2bn"):
        read_q2bn(path)


GOOD_FP16 = _record_bytes("a", Kind.FP16, (2,), b"\x00\x3c\x00\x3c")


@pytest.mark.parametrize(
    ("body", "count", "fault"),
    [
        (_record_bytes("a", 9, (2,), b"\x00" * 4), 1, "unknown kind 9"),
        (_record_bytes("a", Kind.FP16, (3,), b"\x00" * 4, 4), 1, "payload length 4, expected 6"),
        (_record_bytes("a", Kind.Q2_ROWS, (4,), b"\x00" * 4), 1, "needs a 2-D shape"),
        (_record_bytes("", Kind.FP16, (2,), b"\x00" * 4), 1, "empty name"),
        (_record_bytes("a", Kind.FP16, (1,) * 9, b"\x00" * 2), 1, "ndim 9"),
        (_record_bytes("a", Kind.ALIAS, (2,), b"\x00\x00"), 1, "not earlier"),
        (GOOD_FP16 + _record_bytes("a", Kind.FP16, (2,), b"\x00" * 4), 2, "duplicate tensor name"),
        (GOOD_FP16 + _record_bytes("b", Kind.ALIAS, (3,), b"\x00\x00"), 2, "has shape"),
        (
            GOOD_FP16
            + _record_bytes("b", Kind.ALIAS, (2,), b"\x00\x00")
            + _record_bytes("c", Kind.ALIAS, (2,), b"\x01\x00"),
            3,
            "itself an alias",
        ),
        (_record_bytes("q", Kind.Q2_ROWS, (1, 5), b"\x00\x3c" + bytes([0, 1])), 1, "padding symbols"),
        (_record_bytes("q", Kind.Q2_ROWS, (1, 4), b"\x00\x00" + bytes([0])), 1, "positive finite"),
        (_record_bytes("i", Kind.INT8_ROWS, (1, 2), b"\x00\x3c" + bytes([1, 128])), 1, "-128"),
        (GOOD_FP16 + b"\x00", 1, "trailing bytes"),
        (GOOD_FP16, 2, "truncated"),
    ],
)
def test_malformed_records_rejected(body: bytes, count: int, fault: str) -> None:
    """Each malformed field (behind a valid body hash) raises Q2BNError naming the fault and an offset."""
    with pytest.raises(Q2BNError, match=fault) as err:
        parse_raw(_raw(body, count), "crafted")
    assert "at byte" in str(err.value)


@pytest.mark.parametrize(
    ("header", "fault"),
    [
        ({"tokenizer": {"id": "t"}}, "tokenizer"),
        ({"settings_hash": 3}, "settings_hash"),
        ({"tensor_count": -1}, "tensor_count"),
        ({"body_sha256": "abc"}, "body_sha256"),
    ],
)
def test_malformed_header_rejected(header: dict[str, Any], fault: str) -> None:
    """Header fields with the wrong type or value are rejected by name."""
    with pytest.raises(Q2BNError, match=fault):
        parse_raw(_raw(GOOD_FP16, 1, **header), "crafted")


def test_header_length_out_of_bounds_rejected() -> None:
    """A header length running past the stream is rejected before any JSON parsing."""
    raw = bytearray(_raw(GOOD_FP16, 1))
    raw[5:9] = struct.pack("<I", len(raw))
    with pytest.raises(Q2BNError, match="header length"):
        parse_raw(bytes(raw), "crafted")


def test_writer_requires_header_fields() -> None:
    """The writer refuses a header without model, tokenizer and settings_hash."""
    with pytest.raises(ValueError, match="settings_hash"):
        dumps_raw({"model": {}, "tokenizer": {"id": "t", "vocab_size": 1}}, [])


def test_writer_rejects_tau_that_is_not_fp16() -> None:
    """A q2 record needs an fp16-representable τ (the QAT forward must use the stored one)."""
    sym = torch.zeros(1, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="fp16"):
        encode_q2("w", sym, torch.tensor([0.1]))


def _spec_strategy() -> st.SearchStrategy[list[tuple[str, int, tuple[int, ...], int]]]:
    name = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
    dims2 = st.tuples(st.integers(0, 5), st.integers(0, 9))
    dimsn = st.lists(st.integers(0, 4), max_size=3).map(tuple)
    kinds = st.sampled_from([Kind.Q2_ROWS, Kind.FP16, Kind.FP32, Kind.INT8_ROWS])
    spec = st.tuples(name, kinds, dims2, dimsn, st.integers(0, 2**16))
    return st.lists(spec, max_size=6, unique_by=lambda s: s[0]).map(
        lambda specs: [
            (n, k, d2 if k in (Kind.Q2_ROWS, Kind.INT8_ROWS) else dn, seed) for n, k, d2, dn, seed in specs
        ]
    )


@settings(max_examples=40, deadline=None, derandomize=True)
@given(specs=_spec_strategy(), alias=st.booleans())
def test_random_tensor_sets_round_trip(
    specs: list[tuple[str, int, tuple[int, ...], int]], alias: bool
) -> None:
    """Random names, kinds and shapes (including empty dims) round-trip to identical records and tensors."""
    records = []
    expected = {}
    for name, kind, shape, seed in specs:
        t = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3
        tau = fit_tau(t) if kind == Kind.Q2_ROWS else None
        rec = encode(name, t, Kind(kind), tau=tau)
        records.append(rec)
        expected[name] = decode(rec)
    if alias and records:
        records.append(encode_alias("\u00e9alias", 0, records[0].shape))
    contents = loads(dumps(HEADER, records, level=3))
    assert contents.records == records
    state = decode_all(contents.records)
    for name, t in expected.items():
        assert torch.equal(state[name], t)
