"""Write the Q2BN version-1 fixture with the pre-v2 code (how tests/assets/q2bn_v1_geode.* were made).

    cd /tmp && PYTHONPATH=/work/main python /work/wt/quant/tests/assets/make_q2bn_v1_fixture.py OUT_DIR

run against main at 0423148 (the last v1 writer). It packs a 2-group "GC" q2-geode model (SubLN,
bigram prior, QAT on) and saves the reloaded model's logits on fixed tokens plus each tensor's
sha256, which `tests/q2bn/test_v2.py` compares against the current reader.
"""

from __future__ import annotations

import hashlib
import sys

import torch

import golfmodel
from golfmodel.model import ModelConfig, build_model
from golfmodel.q2bn.artifact import load_model, pack_model
from golfmodel.quant.q2linear import q2_linears


def main(out: str) -> None:
    assert golfmodel.__file__.startswith("/work/main/"), golfmodel.__file__
    cfg = ModelConfig(
        arm="q2-geode", vocab_size=64, d_model=32, depth=2, pattern="GC", n_heads=4, n_kv_heads=2,
        mlp_mult=2.0, bigram_prior=True, cfc_chunk=8, max_seq_len=32, sub_norm=True,
    )  # fmt: skip
    torch.manual_seed(11)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.bigram_logprior.copy_(torch.log_softmax(torch.randn(64, 64), -1))
    for layer in q2_linears(model):
        layer.refresh_tau()
        layer.set_qat(True)
    meta = {"tokenizer": {"id": "fixture-64", "vocab_size": 64}, "settings_hash": "f" * 64}
    pack_model(model, f"{out}/q2bn_v1_geode.q2bn", meta=meta)
    loaded, _ = load_model(f"{out}/q2bn_v1_geode.q2bn")
    idx = torch.randint(0, 64, (2, 24), generator=torch.Generator().manual_seed(5))
    idx[:, 0] = 1
    with torch.no_grad():
        logits = loaded(idx)
    sha = {
        k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()
        for k, v in loaded.state_dict().items()
    }
    torch.save({"idx": idx, "logits": logits, "state_sha256": sha}, f"{out}/q2bn_v1_geode.expected.pt")


if __name__ == "__main__":
    main(sys.argv[1])
