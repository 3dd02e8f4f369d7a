"""pack_artifact / load_artifact: the plan names the container; a file is loaded by its bytes."""

from __future__ import annotations

from pathlib import Path

import torch

from golfmodel.model import ModelConfig, build_model
from golfmodel.q2bn import load_model
from golfmodel.q2bn.artifact import load_model as artifact_load_model
from golfmodel.q2bn.container import load_artifact, pack_artifact

META = {"tokenizer": {"id": "t", "vocab_size": 64}, "settings_hash": "0" * 64}
SHAPE = dict(vocab_size=64, d_model=32, depth=2, n_heads=4, n_kv_heads=2, mlp_mult=2.0, max_seq_len=16)


def test_plan_picks_the_container(tmp_path: Path) -> None:
    """gpt-int8 (plan int8) writes the baseline's int8+zlib file, geode + int4 a Q2BN; both load back."""
    torch.manual_seed(0)
    for arm, plan, name in (("gpt-int8", None, "model.int8.ptz"), ("geode", "int4", "model.q2bn")):
        folder = tmp_path / arm
        folder.mkdir()
        model = build_model(ModelConfig(arm=arm, plan=plan, **SHAPE))
        res = pack_artifact(model, folder, meta=META)
        assert res.path.name == name
        loaded, header = load_artifact(res.path)
        assert header["model"]["arm"] == arm and type(loaded) is type(model)


def test_package_entry_point_is_the_artifact_loader() -> None:
    """golfmodel.q2bn.load_model is golfmodel.q2bn.artifact.load_model."""
    assert load_model is artifact_load_model
