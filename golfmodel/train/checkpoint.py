"""Training checkpoints (`ckpt/step_XXXXXX.pt`) and the final weights (`final.pt`).

Both are written atomically (tmp + os.replace) and hold only tensors and primitive containers,
so they load with `torch.load(weights_only=True)`. A checkpoint is what a killed or retried run
resumes from: model, optimiser states, averaging state, step, training clock, data position,
RNG states and the QAT flag of every Q2Linear. `final.pt` holds the fp32 state dict, the model
config and the QAT flags, and is written only once training has fully finished.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from golfmodel.train.files import atomic_torch_save

CKPT_FORMAT = "golf-train-ckpt-1"
FINAL_FORMAT = "golf-final-1"
_STEP_RE = re.compile(r"^step_(\d{6,})\.pt$")


def ckpt_dir(out_dir: Path) -> Path:
    return out_dir / "ckpt"


def ckpt_path(out_dir: Path, step: int) -> Path:
    return ckpt_dir(out_dir) / f"step_{step:06d}.pt"


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoint files in step order (temporary files of an interrupted write are ignored)."""
    d = ckpt_dir(out_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = list_checkpoints(out_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(out_dir: Path, state: dict[str, Any], *, keep: int) -> Path:
    """Write `state` (must contain "step") atomically; keep only the newest `keep` checkpoints."""
    path = ckpt_path(out_dir, int(state["step"]))
    atomic_torch_save(path, {"format": CKPT_FORMAT, **state})
    for old in list_checkpoints(out_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`; raise naming the file when it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt/unsafe files
        raise ValueError(f"{path}: not a loadable training checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not a {CKPT_FORMAT} checkpoint")
    return state


def q2_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Q2Linear (anything with `set_qat`, `refresh_tau` and `qat`) by module name, in model order."""
    return {
        name: m
        for name, m in model.named_modules()
        if hasattr(m, "set_qat") and hasattr(m, "refresh_tau") and hasattr(m, "qat")
    }


def qat_flags(model: nn.Module) -> dict[str, bool]:
    return {name: bool(m.qat) for name, m in q2_layers(model).items()}


def apply_qat_flags(model: nn.Module, flags: dict[str, bool]) -> None:
    layers = q2_layers(model)
    missing = set(flags) ^ set(layers)
    if missing:
        raise ValueError(f"QAT flags do not match the model's Q2Linear layers: {sorted(missing)[:5]}")
    for name, on in flags.items():
        layers[name].set_qat(bool(on))


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict on the CPU, floating tensors in fp32 (detached copies)."""
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        out[k] = v.float().clone() if v.is_floating_point() else v.clone()
    return out


def save_final(path: Path, model: nn.Module, *, extra: dict[str, Any] | None = None) -> None:
    """Write final.pt: {"format", "model_config", "state_dict" (fp32), "qat": {layer: bool}, **extra}."""
    blob = {
        "format": FINAL_FORMAT,
        "model_config": model.config.to_dict(),
        "state_dict": cpu_state_dict(model),
        "qat": qat_flags(model),
        **(extra or {}),
    }
    atomic_torch_save(path, blob)


def load_final(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in a final.pt (weights, τ and QAT flags); returns (model, the file's dict)."""
    from golfmodel.model import build_model
    from golfmodel.model.config import ModelConfig

    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a loadable final.pt ({type(e).__name__}: {e})") from e
    if not isinstance(blob, dict) or blob.get("format") != FINAL_FORMAT:
        raise ValueError(f"{path}: not a {FINAL_FORMAT} file")
    model = build_model(ModelConfig.from_dict(blob["model_config"]))
    load_model_state(model, blob["state_dict"], source=str(path))
    apply_qat_flags(model, blob["qat"])
    return model.to(device), blob


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """load_state_dict(strict) that names the file on a mismatch; a bigram prior is set first if present."""
    prior = state.get("bigram_logprior")
    if prior is not None and hasattr(model, "set_bigram_logprior"):
        model.set_bigram_logprior(prior)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{source}: weights do not match the model config: {e}") from e
