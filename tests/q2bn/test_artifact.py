"""pack_model / load_model / export_view: storage kinds, aliasing and bit-exact reloading (SPEC §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from golfmodel.q2bn.artifact import export_view, load_model, model_records, pack_model
from golfmodel.q2bn.format import Kind, Q2BNError, read_q2bn
from golfmodel.quant.q2linear import Q2Linear, q2_linears

from .conftest import TINY_CONFIG, TinyLM, build_tiny


def _pack_and_load(model: TinyLM, meta: dict[str, Any], tmp_path: Path, **kw: Any) -> TinyLM:
    path = tmp_path / "m.q2bn"
    pack_model(model, path, meta=meta, **kw)
    loaded, _ = load_model(path, builder=build_tiny)
    assert isinstance(loaded, TinyLM)
    return loaded


def test_storage_kind_of_each_tensor(tiny_model: TinyLM) -> None:
    """Embedding and bigram prior → int8 rows, Q2Linear → q2, gains/log_dt/bias → fp16, tied head → alias."""
    kinds = {r.name: r.kind for r in model_records(tiny_model)}
    assert kinds["tok_emb.weight"] == Kind.INT8_ROWS
    assert kinds["bigram_logprior"] == Kind.INT8_ROWS
    assert kinds["blocks.0.up.weight"] == Kind.Q2_ROWS
    assert kinds["blocks.1.down.bias"] == Kind.FP16
    assert kinds["blocks.0.log_dt"] == Kind.FP16
    assert kinds["final_norm"] == Kind.FP16
    assert kinds["head.weight"] == Kind.ALIAS


def test_tau_and_nonpersistent_buffers_not_stored_separately(tiny_model: TinyLM) -> None:
    """τ lives inside its q2 record and non-persistent caches are skipped."""
    names = [r.name for r in model_records(tiny_model)]
    assert not any(n.endswith(".tau") or n.endswith(".cache") for n in names)


def test_records_follow_state_dict_order(tiny_model: TinyLM) -> None:
    """Records come in state-dict order: embedding, blocks in depth order, head."""
    names = [r.name for r in model_records(tiny_model)]
    state_names = [n for n in tiny_model.state_dict() if not n.endswith(".tau")]
    assert names == state_names
    assert (
        names.index("tok_emb.weight") < names.index("blocks.0.up.weight") < names.index("blocks.1.up.weight")
    )
    assert names.index("blocks.1.down.weight") < names.index("head.weight")


def test_tied_head_is_an_alias_of_the_embedding(tiny_model: TinyLM) -> None:
    """The tied head is stored once: an alias pointing at the embedding's record."""
    records = model_records(tiny_model)
    index = {r.name: i for i, r in enumerate(records)}
    head = records[index["head.weight"]]
    assert head.payload == index["tok_emb.weight"].to_bytes(2, "little")


def test_loaded_weights_equal_export_view(tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path) -> None:
    """Every loaded tensor equals the export view bit for bit (fp32), τ included."""
    view = export_view(tiny_model)
    loaded = _pack_and_load(tiny_model, meta, tmp_path)
    state = loaded.state_dict()
    assert set(state) == set(view)
    for name, t in view.items():
        assert state[name].dtype == torch.float32
        assert torch.equal(state[name], t), name


def test_loaded_q2_weights_equal_the_qat_forward_weights(
    tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path
) -> None:
    """The loaded Q2Linear weights are exactly what the QAT forward used, with the same τ."""
    loaded = _pack_and_load(tiny_model, meta, tmp_path)
    for before, after in zip(q2_linears(tiny_model), q2_linears(loaded), strict=True):
        assert torch.equal(after.effective_weight(), before.effective_weight())
        assert torch.equal(after.tau, before.tau)
        assert not after.qat


def test_loaded_logits_equal_export_view_logits(
    tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path
) -> None:
    """Logits of the reloaded model equal those of a model loaded from the export view."""
    loaded = _pack_and_load(tiny_model, meta, tmp_path)
    reference = TinyLM(TINY_CONFIG)
    reference.load_state_dict(export_view(tiny_model))
    for layer in q2_linears(reference):
        layer.set_qat(False)
    idx = torch.randint(0, TINY_CONFIG["vocab_size"], (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(idx), reference(idx))


def test_loaded_model_gives_same_logits_with_qat_on(
    tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path
) -> None:
    """Switching QAT on in the loaded model changes nothing (re-quantising stored weights is the identity)."""
    loaded = _pack_and_load(tiny_model, meta, tmp_path)
    idx = torch.randint(0, TINY_CONFIG["vocab_size"], (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        off = loaded(idx)
        for layer in q2_linears(loaded):
            layer.set_qat(True)
        assert torch.equal(loaded(idx), off)


def test_fp32_linear_kind_keeps_linear_weights_exact(
    tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path
) -> None:
    """linear_kind='fp32' (the fp32 twin) stores Q2Linear shadow weights unrounded."""
    loaded = _pack_and_load(tiny_model, meta, tmp_path, linear_kind="fp32")
    for before, after in zip(q2_linears(tiny_model), q2_linears(loaded), strict=True):
        assert torch.equal(after.weight, before.weight)


def test_keep_fp32_names_are_stored_fp32(tiny_model: TinyLM) -> None:
    """Names listed in keep_fp32 are stored as fp32 and come back unrounded."""
    kinds = {r.name: r.kind for r in model_records(tiny_model, keep_fp32=("log_dt",))}
    assert kinds["blocks.0.log_dt"] == Kind.FP32
    view = export_view(tiny_model, keep_fp32=("log_dt",))
    assert torch.equal(view["blocks.0.log_dt"], tiny_model.blocks[0].log_dt.detach())


def test_header_carries_meta_and_linear_kind(
    tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path
) -> None:
    """The header holds the caller's meta plus the format and linear kind; the result lists every record."""
    path = tmp_path / "m.q2bn"
    result = pack_model(tiny_model, path, meta={**meta, "run": "r1"})
    header, records = read_q2bn(path)
    assert header["run"] == "r1" and header["linear_kind"] == "q2" and header["model"] == TINY_CONFIG
    assert [t.name for t in result.tensors] == [r.name for r in records]
    assert result.compressed_bytes == path.stat().st_size
    assert sum(result.kind_totals().values()) == sum(len(r.payload) for r in records)


def test_load_rejects_a_model_that_does_not_fit(
    tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path
) -> None:
    """A builder whose model has other shapes gives a Q2BNError naming the file."""
    path = tmp_path / "m.q2bn"
    pack_model(tiny_model, path, meta=meta)
    with pytest.raises(Q2BNError, match="m.q2bn"):
        load_model(path, builder=lambda cfg: TinyLM({**cfg, "d_model": 16}))


def test_pack_rejects_unknown_linear_kind(tiny_model: TinyLM, meta: dict[str, Any], tmp_path: Path) -> None:
    """linear_kind must be 'q2' or 'fp32'."""
    with pytest.raises(ValueError, match="linear_kind"):
        pack_model(tiny_model, tmp_path / "m.q2bn", meta=meta, linear_kind="int4")


@pytest.mark.parametrize("sub_norm", [False, True])
def test_real_q2_geode_model_round_trips(tmp_path: Path, sub_norm: bool) -> None:
    """A tiny q2-geode model from golfmodel.model (with and without SubLN) packs and reloads."""
    model_pkg = pytest.importorskip("golfmodel.model")
    cfg = model_pkg.ModelConfig(
        arm="q2-geode",
        vocab_size=32,
        d_model=16,
        depth=1,
        n_heads=2,
        n_kv_heads=1,
        mlp_mult=2.0,
        max_seq_len=16,
        sub_norm=sub_norm,
    )
    torch.manual_seed(0)
    model = model_pkg.build_model(cfg)
    for layer in q2_linears(model):
        layer.set_qat(True)
    path = tmp_path / "g.q2bn"
    pack_model(model, path, meta={"tokenizer": {"id": "t", "vocab_size": 32}, "settings_hash": "s"})
    loaded, header = load_model(path)
    assert header["model"] == cfg.to_dict()
    view = export_view(model)
    assert all(torch.equal(t, view[n]) for n, t in loaded.state_dict().items())
    assert any(isinstance(m, Q2Linear) for m in loaded.modules())
