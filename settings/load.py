"""Resolve settings: TOML preset, then `GOLF_` environment variables, then CLI `--set a.b=c`.

Each later source overrides the earlier ones (pydantic-settings deep-merges them). Unknown
`GOLF_` variables and unknown `--set` keys are errors, never silently ignored. The environment
is read here (an entry point's helper) and nowhere in `golfmodel`.

    settings = load_settings("smoke", overrides=["train.max_steps=50"])
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from golf.settings.schema import Settings

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
ENV_PREFIX = "GOLF_"


class SettingsError(ValueError):
    """Invalid settings: the message names the field (dotted path) and what is allowed."""


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def preset_chain(name: str) -> list[Path]:
    """The preset's TOML file preceded by the files it `extends` (base first)."""
    chain: list[Path] = []
    seen: set[str] = set()
    current: str | None = name
    while current is not None:
        if current in seen:
            raise SettingsError(f"preset {name!r}: 'extends' cycle through {current!r}")
        seen.add(current)
        path = PRESETS_DIR / f"{current}.toml"
        if not path.exists():
            raise SettingsError(f"unknown preset {current!r}; available: {', '.join(preset_names())}")
        chain.insert(0, path)
        with path.open("rb") as f:
            current = tomllib.load(f).get("extends")
    return chain


def _field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Dotted paths of every settable field → its annotation (sections recurse)."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(_field_paths(ann, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = ann
    return out


FIELD_PATHS: dict[str, Any] = _field_paths(Settings)


def _check_keys(keys: Sequence[str], source: str) -> None:
    for key in keys:
        if key not in FIELD_PATHS:
            close = [p for p in FIELD_PATHS if p.split(".")[-1] == key.split(".")[-1]]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SettingsError(f"{source}: unknown setting {key!r}{hint}")


def _parse_value(raw: str) -> Any:
    """CLI values: JSON when they parse (numbers, true/false, null, lists), else the plain string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """`["train.max_steps=5", ...]` → nested dict, rejecting unknown keys."""
    flat: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise SettingsError(f"--set {item!r}: expected KEY=VALUE, e.g. train.max_steps=100")
        key, raw = item.split("=", 1)
        key = key.strip()
        _check_keys([key], "--set")
        flat[key] = _parse_value(raw)
    return _nest(flat)


def check_environment(environ: Mapping[str, str]) -> None:
    """Reject `GOLF_*` variables that name no setting (a typo must not be silently ignored)."""
    keys = [k[len(ENV_PREFIX) :].lower().replace("__", ".") for k in environ if k.startswith(ENV_PREFIX)]
    _check_keys(keys, "environment (GOLF_*)")


def _loader_class(files: list[Path]) -> type[BaseSettings]:
    class _Loader(BaseSettings):
        model_config = SettingsConfigDict(
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
            extra="forbid",
            toml_file=files,
            case_sensitive=False,
        )
        preset: str = "smoke"
        data: dict[str, Any] = {}
        tokeniser: dict[str, Any] = {}
        model: dict[str, Any] = {}
        quant: dict[str, Any] = {}
        train: dict[str, Any] = {}
        pack: dict[str, Any] = {}
        eval: dict[str, Any] = {}
        pipeline: dict[str, Any] = {}
        drift: dict[str, Any] = {}
        extends: str | None = None

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # Highest priority first: CLI (init kwargs) > environment > TOML preset chain.
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, deep_merge=True))

    return _Loader


def load_settings(preset: str = "smoke", overrides: Sequence[str] = ()) -> Settings:
    """Resolve and validate settings; raise `SettingsError` naming the field on any fault."""
    check_environment(os.environ)
    cli = parse_overrides(overrides)
    files = preset_chain(preset)
    try:
        raw = _loader_class(files)(**cli).model_dump()
    except ValidationError as e:
        raise SettingsError(_format_error(e)) from None
    raw.pop("extends", None)
    raw["preset"] = preset
    for section in _SECTIONS:
        for key in list(raw[section]):
            path = f"{section}.{key}"
            _check_keys([path], f"preset {preset!r}")
            raw[section][key] = _coerce(path, raw[section][key])
    return validate_settings(raw)


_SECTIONS = ("data", "tokeniser", "model", "quant", "train", "pack", "eval", "pipeline", "drift")


def _coerce(path: str, value: Any) -> Any:
    """Environment values arrive as strings: JSON-decode them unless the field is a plain string."""
    if not isinstance(value, str) or FIELD_PATHS[path] in (str, Path, Path | None, str | None):
        return value
    return _parse_value(value)


def flatten_overrides(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """Overrides as `{dotted key: value}`: from `["k=v", ...]`, dotted keys, a partial tree, or a mix.

    `{"train.max_steps": 25}`, `{"train": {"max_steps": 25}}` and `["train.max_steps=25"]` are the
    same override; unknown keys raise naming them.
    """
    if not overrides:
        return {}
    if not isinstance(overrides, Mapping):
        if isinstance(overrides, str):
            raise SettingsError(f"overrides: expected a mapping or a list of KEY=VALUE, got {overrides!r}")
        overrides = parse_overrides(list(overrides))
    flat: dict[str, Any] = {}

    def walk(tree: Mapping[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            path = f"{prefix}{key}"
            if isinstance(value, Mapping) and path not in FIELD_PATHS:
                walk(value, f"{path}.")
            else:
                flat[path] = value

    walk(overrides, "")
    _check_keys(list(flat), "overrides")
    return flat


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` merged onto `base`: mappings merge key by key, anything else (lists too) replaces."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def resolve_settings(
    settings: Settings | Mapping[str, Any] | None,
    preset: str | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Settings:
    """The flow's settings: `preset` (resolved like the CLI's) or else `settings` (else the smoke
    preset), with `overrides` deep-merged on top and the whole tree validated (cross-field checks too)."""
    if preset is not None:
        base: dict[str, Any] = load_settings(preset).model_dump(mode="json")
    elif isinstance(settings, Settings):
        base = settings.model_dump(mode="json")
    elif settings is not None:
        base = json.loads(json.dumps(dict(settings), default=str))
    else:
        base = load_settings("smoke").model_dump(mode="json")
    for path, value in flatten_overrides(overrides).items():
        node = base
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return validate_settings(base)


def validate_settings(raw: Mapping[str, Any]) -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        raise SettingsError(_format_error(e)) from None


def _format_error(e: ValidationError) -> str:
    lines = ["invalid settings:"]
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        ctx = err.get("ctx") or {}
        allowed = ", ".join(
            f"{k}={v}"
            for k, v in ctx.items()
            if k in {"ge", "gt", "le", "lt", "pattern", "multiple_of", "expected"}
        )
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(
            f"  {loc or '(settings)'}: {msg}"
            + (f" [allowed: {allowed}]" if allowed else "")
            + ("" if isinstance(err.get("input"), dict) else f" (got {err.get('input')!r})")
        )
    return "\n".join(lines)


def settings_hash(settings: Settings) -> str:
    """Stable sha256 of the resolved settings (recorded in provenance and the artifact header)."""
    import hashlib

    blob = json.dumps(settings.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
