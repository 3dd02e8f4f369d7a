"""Q2BN version 2: every storage kind round-trips pack → load bit for bit, is fuzzed, and v1 files still load."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
import torch
import zstandard

from golfmodel.model import ModelConfig, build_model, param_report
from golfmodel.q2bn.artifact import export_view, load_model, pack_model
from golfmodel.q2bn.format import (
    MAGIC,
    PREFIX,
    Kind,
    Q2BNError,
    compress_raw,
    decompress,
    loads,
    parse_raw,
    read_q2bn_contents,
)
from golfmodel.quant.kinds import kind_for
from golfmodel.quant.plan import QuantPlan, QuantRule, named_plan
from golfmodel.quant.qlinear import no_tau_init, qlinears
from golfmodel.quant.spec import QuantSpec

ASSETS = Path(__file__).resolve().parents[1] / "assets"
META = {"tokenizer": {"id": "t64", "vocab_size": 64}, "settings_hash": "0" * 64}
ALL_KINDS = {  # family -> spec: one of every kind, per row and per group, fitted and learned
    "attn_qkv": "ternary",
    "attn_o": "int4g8",
    "mlp_in": "int6:learned",
    "mlp_down": "fp8g16",
    "cfc_in": "q2g8",
    "cfc_out": "int3",
    "embed": "fp8",
    "bigram": "int8:absmax",
    "scalars": "fp16",
}


def _plan() -> QuantPlan:
    rules = [QuantRule(family="cfc_in", depth=1, spec=QuantSpec(kind="fp32"))]
    rules += [QuantRule(family="mlp_down", depth=1, spec=QuantSpec(kind="q2"))]
    rules += [QuantRule(family=f, spec=QuantSpec.parse(s)) for f, s in ALL_KINDS.items()]
    return QuantPlan(name="every-kind", rules=tuple(rules))


@pytest.fixture(scope="module")
def every_kind_model() -> torch.nn.Module:
    """A 2-group geode with every storage kind, trained-looking weights, QAT on."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        arm="geode", plan=_plan(), vocab_size=64, d_model=32, depth=2, pattern="GC", n_heads=4,
        n_kv_heads=2, mlp_mult=2.0, bigram_prior=True, cfc_chunk=8, max_seq_len=32,
    )  # fmt: skip
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.03)
        model.bigram_logprior.copy_(torch.log_softmax(torch.randn(64, 64), -1))
    for layer in qlinears(model):
        layer.refresh_tau()
        layer.set_qat(True)
    return model.eval()


@pytest.fixture(scope="module")
def packed(every_kind_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("v2") / "every.q2bn"
    pack_model(every_kind_model, path, meta=META)
    return path


def _idx() -> torch.Tensor:
    idx = torch.randint(0, 64, (2, 20), generator=torch.Generator().manual_seed(1))
    idx[:, 0] = 1
    return idx


def test_every_kind_is_in_the_artifact(packed: Path) -> None:
    """The file is version 2 and holds each kind; records name bits and group size."""
    contents = read_q2bn_contents(packed)
    assert contents.version == 2
    labels = {r.label for r in contents.records}
    assert {
        "ternary",
        "int4g8",
        "int6",
        "fp8g16",
        "q2g8",
        "int3",
        "fp8",
        "int8",
        "fp16",
        "fp32",
        "q2",
    } <= labels
    assert {r.kind for r in contents.records} >= set(Kind) - {Kind.INT8_ROWS}


def test_every_kind_reloads_bit_exactly(every_kind_model: torch.nn.Module, packed: Path) -> None:
    """Loaded weights equal the export view, and so do the logits of a model holding the export view."""
    loaded, header = load_model(packed)
    view = export_view(every_kind_model)
    state = loaded.state_dict()
    assert state.keys() == view.keys() and all(torch.equal(state[k], view[k]) for k in view)
    with no_tau_init():
        reference = build_model(every_kind_model.config).eval()
    reference.load_state_dict(view)
    with torch.no_grad():
        assert torch.equal(loaded(_idx()), reference(_idx()))
    assert QuantPlan.from_dict(header["plan"]) == _plan()


def test_requantising_a_loaded_model_changes_nothing(packed: Path) -> None:
    """QAT on a loaded model (every kind) reproduces its weights: ŵ(ŵ, τ) = ŵ, so the logits are equal."""
    loaded, _ = load_model(packed)
    with torch.no_grad():
        off = loaded(_idx())
        for layer in qlinears(loaded):
            layer.set_qat(True)
        assert torch.equal(loaded(_idx()), off)


def test_report_bytes_equal_the_packed_payloads(every_kind_model: torch.nn.Module, packed: Path) -> None:
    """param_report and the packer agree on every tensor's label and payload bytes (one rule)."""
    records = {r.name: r for r in read_q2bn_contents(packed).records}
    for row in param_report(every_kind_model):
        rec = records[row.name]
        assert (row.kind, row.bytes + (2 if row.kind == "alias" else 0)) == (rec.label, len(rec.payload)), (
            row.name
        )


def test_truncated_v2_file_rejected(packed: Path) -> None:
    """Every cut of the file (sampled every 5 bytes, plus the last 40) raises Q2BNError."""
    data = packed.read_bytes()
    cuts = sorted(set(range(0, len(data), 5)) | set(range(max(0, len(data) - 40), len(data))))
    for n in cuts:
        with pytest.raises(Q2BNError):
            loads(data[:n], "cut")


def test_v2_bit_flips_never_load_silently(packed: Path) -> None:
    """400 sampled single-bit flips each raise Q2BNError or decode to the identical stream."""
    data = packed.read_bytes()
    raw = decompress(data)
    g = torch.Generator().manual_seed(0)
    for bit in torch.randint(0, 8 * len(data), (400,), generator=g).tolist():
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            same = decompress(bytes(flipped)) == raw
        except Q2BNError:
            continue
        assert same, f"bit {bit} changed the content without an error"


def test_v2_body_flip_recompressed_is_caught(packed: Path) -> None:
    """Flipping a payload bit and re-compressing fails the body sha256."""
    raw = bytearray(decompress(packed.read_bytes()))
    raw[-3] ^= 0x10
    with pytest.raises(Q2BNError, match="sha256"):
        loads(compress_raw(bytes(raw), level=3))


def _v2_record(
    kind: int, bits: int, group: int, layout: int, shape: tuple[int, ...], payload: bytes
) -> bytes:
    dims = struct.pack(f"<{len(shape)}I", *shape)
    return (
        b"\x01\x00w"
        + struct.pack("<BBIBB", kind, bits, group, layout, len(shape))
        + dims
        + struct.pack("<Q", len(payload))
        + payload
    )


def _v2_raw(body: bytes) -> bytes:
    import json

    head = {**META, "model": {}, "tensor_count": 1, "body_sha256": hashlib.sha256(body).hexdigest()}
    text = json.dumps(head).encode()
    return PREFIX.pack(MAGIC, 2, len(text)) + text + body


@pytest.mark.parametrize(
    ("record", "fault"),
    [
        (_v2_record(7, 8, 0, 1, (1, 1), b"\x00\x3c\x00"), "unknown kind 7"),
        (_v2_record(3, 2, 0, 1, (1, 1), b"\x00\x3c\x00"), "bits"),
        (_v2_record(0, 3, 0, 1, (1, 4), b"\x00\x3c\x00"), "has 2 bits, got 3"),
        (_v2_record(3, 8, 0, 2, (1, 1), b"\x00\x3c\x00"), "scale layout 2"),
        (_v2_record(3, 8, 3, 2, (1, 4), b"\x00" * 8), "does not divide"),
        (_v2_record(1, 16, 8, 0, (2,), b"\x00" * 4), "group_size"),
        (_v2_record(5, 2, 0, 1, (1, 5), b"\x00\x3c" + bytes([243])), "242"),
        (_v2_record(6, 8, 0, 1, (1, 2), b"\x00\x3c" + bytes([0x7F, 0])), "NaN"),
    ],
)
def test_malformed_v2_records_rejected(record: bytes, fault: str) -> None:
    """Impossible kind/bits/group/layout fields and bad payload values raise Q2BNError naming them."""
    with pytest.raises(Q2BNError, match=fault):
        parse_raw(_v2_raw(record), "crafted")


@pytest.mark.parametrize(
    ("label", "row", "scale", "payload"),
    [
        ("int4", [1.5, -0.5, 3.5, -3.5, 0.0], 0.5, "00 38 3f 79 00"),
        ("ternary", [0.5, 0.0, -0.5, 0.5, 0.5, -0.5], 0.5, "00 38 c5 00"),
        ("fp8", [1.0, -0.5], 1.0, "00 3c 38 b0"),
    ],
)
def test_payload_layout_examples(label: str, row: list[float], scale: float, payload: str) -> None:
    """The byte-level examples of docs/q2bn.md: fp16 scale, then the row's packed codes."""
    kind = kind_for(QuantSpec.parse(label))
    assert kind.encode(torch.tensor([row]), torch.tensor([scale])).hex(" ") == payload


def test_v1_fixture_loads_bit_exactly() -> None:
    """The v1 artifact written by the pre-v2 code loads through load_model with the same tensors, bit for bit,
    and the same logits up to float rounding (the recorded logits come from another CPU: torch's CPU kernels
    take an instruction-set-dependent path, so an AVX-512 machine differs by ~1e-6 in the last bits)."""
    path = ASSETS / "q2bn_v1_geode.q2bn"
    expected = torch.load(ASSETS / "q2bn_v1_geode.expected.pt", weights_only=True)
    assert read_q2bn_contents(path).version == 1
    model, header = load_model(path)
    assert "plan" not in header and header["model"]["arm"] == "q2-geode"
    state = model.state_dict()
    sha = {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in state.items()}
    assert sha == expected["state_sha256"]
    with torch.no_grad():
        torch.testing.assert_close(model(expected["idx"]), expected["logits"], rtol=0, atol=1e-5)


def test_v1_fixture_truncation_and_flips_rejected() -> None:
    """The v1 reader keeps its checks: sampled truncations and recompressed body flips are refused."""
    data = (ASSETS / "q2bn_v1_geode.q2bn").read_bytes()
    for n in range(0, len(data), 97):
        with pytest.raises(Q2BNError):
            loads(data[:n], "cut")
    raw = bytearray(zstandard.ZstdDecompressor().decompress(data))
    raw[-1] ^= 1
    with pytest.raises(Q2BNError, match="sha256"):
        loads(compress_raw(bytes(raw), level=3))


def test_q2_plan_records_keep_the_v1_payloads(tmp_path: Path) -> None:
    """Under plan q2 every v2 payload is byte-identical to the v1 fixture's (only record fields differ)."""
    v1 = read_q2bn_contents(ASSETS / "q2bn_v1_geode.q2bn")
    model, _ = load_model(ASSETS / "q2bn_v1_geode.q2bn")
    assert model.config.quant_plan == named_plan("q2")
    pack_model(model, tmp_path / "re.q2bn", meta=META)
    v2 = read_q2bn_contents(tmp_path / "re.q2bn")
    assert [(r.name, r.kind, r.payload) for r in v2.records] == [
        (r.name, r.kind, r.payload) for r in v1.records
    ]
