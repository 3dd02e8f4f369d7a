"""The settings model is the flow's parameter: it renders as the UI form and invalid values are rejected."""

from __future__ import annotations

import pytest


def test_parameter_schema_is_the_settings_tree() -> None:
    """The flow's parameter schema holds every settings section, with the fields' bounds."""
    from golf.flows.pipeline import golf_pipeline

    schema = golf_pipeline.parameters.model_dump()
    defs = schema.get("definitions") or schema.get("$defs")
    assert "settings" in schema["properties"] and schema["required"] == ["settings"]
    assert {"DataSettings", "TrainSettings", "PackSettings", "EvalSettings"} <= set(defs)
    assert defs["TrainSettings"]["properties"]["max_steps"]["minimum"] == 1


def test_invalid_parameters_are_rejected() -> None:
    """A settings dict with an out-of-range value fails parameter validation, naming the field."""
    from golf.flows.pipeline import golf_pipeline
    from golf.settings import load_settings

    bad = load_settings("test").model_dump(mode="json")
    bad["pack"]["budget_bytes"] = -1
    with pytest.raises(Exception, match="budget_bytes"):
        golf_pipeline.validate_parameters({"settings": bad})


def test_form_offers_preset_and_overrides_but_no_schedule() -> None:
    """The run form gains `preset` and `overrides`; the nightly cron (nothing for one run) is not in it."""
    from golf.flows.pipeline import golf_pipeline

    schema = golf_pipeline.parameters.model_dump()
    defs = schema.get("definitions") or schema.get("$defs")
    assert {"preset", "overrides"} <= set(schema["properties"])
    assert "nightly_cron" not in defs["PipelineSettings"]["properties"]
    assert "quality_gate" in defs["PipelineSettings"]["properties"] and "DriftSettings" in defs
