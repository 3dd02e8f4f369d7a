"""golf.settings: the validated pydantic settings tree, its TOML presets and the loader.

from golf.settings import load_settings
settings = load_settings("smoke", overrides=["train.max_steps=50"])
"""

from golf.settings.load import (
    SettingsError,
    deep_merge,
    load_settings,
    preset_names,
    resolve_settings,
    settings_hash,
    validate_settings,
)
from golf.settings.schema import STAGES, Settings

__all__ = [
    "STAGES",
    "Settings",
    "SettingsError",
    "deep_merge",
    "load_settings",
    "preset_names",
    "resolve_settings",
    "settings_hash",
    "validate_settings",
]
