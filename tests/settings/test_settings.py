"""Settings: the pinned schema, presets, precedence (preset → GOLF_ env → --set), validation errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from golf.settings import STAGES, Settings, SettingsError, load_settings, preset_names
from golf.settings.load import FIELD_PATHS, validate_settings

SNAPSHOT = Path(__file__).with_name("schema_fields.txt")
STABLE_PATHS = (
    "data.mirror",
    "data.variant",
    "train.max_wallclock_seconds",
    "train.max_steps",
    "pack.budget_bytes",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GOLF_* variable from the caller's shell (e.g. make's GOLF_DATA__MIRROR) leaks into a test."""
    for key in list(os.environ):
        if key.startswith("GOLF_"):
            monkeypatch.delenv(key)


def _type_name(ann: object) -> str:
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "").replace("pathlib.", "")


def _schema_lines() -> list[str]:
    return [f"{path}: {_type_name(ann)}" for path, ann in sorted(FIELD_PATHS.items())]


def test_schema_is_pinned() -> None:
    """Every settings field path (and its type) matches the snapshot; to accept a change run with
    UPDATE_SETTINGS_SNAPSHOT=1 (and review the diff of tests/settings/schema_fields.txt)."""
    lines = _schema_lines()
    if os.environ.get("UPDATE_SETTINGS_SNAPSHOT") == "1":
        SNAPSHOT.write_text("\n".join(lines) + "\n")
    expected = SNAPSHOT.read_text().splitlines()
    added, removed = sorted(set(lines) - set(expected)), sorted(set(expected) - set(lines))
    assert not added and not removed, f"settings schema changed: added {added}, removed {removed}"


def test_stable_paths_exist() -> None:
    """Field paths that scripts outside the code rely on keep their names."""
    assert all(p in FIELD_PATHS for p in STABLE_PATHS)


@pytest.mark.parametrize("preset", ["test", "smoke", "minigolf", "h100x1", "h100x8"])
def test_preset_loads(preset: str) -> None:
    """Every required preset resolves and validates."""
    s = load_settings(preset)
    assert isinstance(s, Settings) and s.preset == preset


def test_every_preset_file_loads() -> None:
    """No preset file in settings/presets is broken."""
    assert {p: load_settings(p).preset for p in preset_names()} == {p: p for p in preset_names()}


def test_h100x8_is_the_challenge_run() -> None:
    """h100x8: 8 processes, 600 s of training, 16,000,000 bytes."""
    s = load_settings("h100x8")
    assert (s.train.nproc, s.train.max_wallclock_seconds, s.pack.budget_bytes) == (8, 600, 16_000_000)


def test_env_overrides_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GOLF_ variable (nested with __) overrides the preset."""
    monkeypatch.setenv("GOLF_TRAIN__MAX_STEPS", "7")
    assert load_settings("smoke").train.max_steps == 7


def test_cli_overrides_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """--set overrides a GOLF_ variable."""
    monkeypatch.setenv("GOLF_TRAIN__MAX_STEPS", "7")
    assert load_settings("smoke", overrides=["train.max_steps=9"]).train.max_steps == 9


def test_env_path_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """GOLF_DATA__MIRROR sets the mirror path."""
    monkeypatch.setenv("GOLF_DATA__MIRROR", str(tmp_path))
    assert load_settings("smoke").data.mirror == tmp_path


def test_unknown_env_var_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GOLF_ variable that names no setting is rejected, naming it."""
    monkeypatch.setenv("GOLF_TRAIN__MAX_STEP", "7")
    with pytest.raises(SettingsError, match="train.max_step"):
        load_settings("smoke")


def test_unknown_set_key_is_an_error() -> None:
    """An unknown --set key is rejected, naming it."""
    with pytest.raises(SettingsError, match="train.nosuch"):
        load_settings("smoke", overrides=["train.nosuch=1"])


def test_invalid_value_names_the_field() -> None:
    """An out-of-range value stops with the field's dotted path and the allowed range."""
    with pytest.raises(SettingsError, match=r"train\.max_steps.*ge=1"):
        load_settings("smoke", overrides=["train.max_steps=0"])


def test_cross_field_check_names_the_fields() -> None:
    """n_kv_heads must divide n_heads: the message names both fields."""
    with pytest.raises(SettingsError, match="model.n_kv_heads"):
        load_settings("smoke", overrides=["model.n_heads=4", "model.n_kv_heads=3"])


def test_sub_norm_on_the_gpt_arch_is_rejected() -> None:
    """model.sub_norm belongs to the geode blocks: with arch gpt the error names both fields."""
    with pytest.raises(SettingsError, match="model.sub_norm.*model.arch"):
        load_settings("smoke", overrides=["model.arch=gpt", "model.sub_norm=true"])


def test_unknown_quant_plan_is_rejected() -> None:
    """quant.plan must be a named plan; the error lists the names."""
    with pytest.raises(SettingsError, match="quant.plan.*int4"):
        load_settings("smoke", overrides=["quant.plan=int5"])


def test_inline_quant_plan_table_is_validated() -> None:
    """quant.plan may be an inline table; a bad rule is an error naming the rule."""
    rules = [
        {"family": f, "spec": "int4"}
        for f in ("attn_qkv", "attn_o", "mlp_in", "mlp_down", "cfc_in", "cfc_out")
    ]
    rules += [
        {"family": "embed", "spec": "int8"},
        {"family": "bigram", "spec": "int8"},
        {"family": "scalars", "spec": "fp16"},
    ]
    s = validate_settings({"quant": {"plan": {"name": "mine", "rules": rules}}})
    assert s.quant.plan["name"] == "mine"
    with pytest.raises(SettingsError, match=r"quant.plan.*rules\[0\]"):
        validate_settings(
            {"quant": {"plan": {"name": "bad", "rules": [{"family": "nope", "spec": "q2"}, *rules]}}}
        )


def test_unknown_preset_is_an_error() -> None:
    """An unknown preset lists the available ones."""
    with pytest.raises(SettingsError, match="available"):
        load_settings("nosuch")


def test_pipeline_stages_are_ordered() -> None:
    """pipeline.stages comes back in pipeline order whatever order it was given in."""
    s = load_settings("smoke", overrides=['pipeline.stages=["bigram","download"]'])
    assert s.pipeline.stages == ("download", "bigram") and set(STAGES) >= set(s.pipeline.stages)
