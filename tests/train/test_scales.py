"""The trainer's scales: the cheap Lloyd update, one compiled graph across QAT switches, learned τ."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from golfmodel.quant.plan import named_plan
from golfmodel.quant.qlinear import QLinear, qlinears
from golfmodel.quant.spec import QuantSpec
from golfmodel.train.checkpoint import load_final
from golfmodel.train.config import TrainJob
from golfmodel.train.runtime import DistEnv
from golfmodel.train.scales import ScaleKeeper
from golfmodel.train.trainer import Trainer, train


def _layers(n: int = 2) -> dict[str, QLinear]:
    torch.manual_seed(0)
    return {f"l{i}": QLinear(16, 8) for i in range(n)}


def test_lloyd_update_is_one_least_squares_step_on_qat_on_layers_only() -> None:
    """update(): τ ← Σw·ℓ/Σℓ² (fp16) per row where QAT is on; a QAT-off layer keeps its τ."""
    layers = _layers()
    on, off = layers["l0"], layers["l1"]
    on.set_qat(True)
    with torch.no_grad():
        for m in layers.values():
            m.weight.mul_(1.3)  # the weights moved since the last fit
    lv = on.kind.levels(on.weight, on.tau)
    want = ((on.weight * lv).sum(1) / (lv * lv).sum(1)).half().float()
    off_tau = off.tau.clone()
    ScaleKeeper(layers).update()
    assert torch.equal(on.tau, want) and torch.equal(off.tau, off_tau)


def test_settle_iterates_lloyd_from_the_current_tau() -> None:
    """settle(k) = k Lloyd steps from the τ the layer holds (not the exact solve), QAT state aside."""
    layers = _layers(1)
    m = layers["l0"]
    with torch.no_grad():
        m.weight.mul_(1.3)
    want = m.tau.clone()
    for _ in range(3):
        want = m.kind.lloyd(m.weight, want)
    assert ScaleKeeper(layers).settle(3) == 1 and torch.equal(m.tau, want)


class _Ops(TorchDispatchMode):
    """Records the aten ops that run."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.append(str(func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))


def test_lloyd_update_runs_no_sort_and_no_host_sync() -> None:
    """The per-step update dispatches no sort and never reads a value back to the host."""
    layers = _layers()
    for m in layers.values():
        m.set_qat(True)
    keeper = ScaleKeeper(layers)
    with _Ops() as ops:
        keeper.update()
    assert ops.names and not {"sort", "topk", "argsort", "_local_scalar_dense", "item"} & set(ops.names)


def test_compiled_update_is_one_graph_equal_to_eager() -> None:
    """The compiled update captures whole (fullgraph), matches eager, and a QAT switch adds no graph."""
    torch._dynamo.reset()
    layers = {**_layers(), "g": QLinear(32, 8, spec=QuantSpec.parse("int4g16"))}
    twin = {n: QLinear(m.in_features, m.out_features, spec=m.spec) for n, m in layers.items()}
    for n, m in layers.items():
        twin[n].load_state_dict(m.state_dict())
    fitted = {n: m.tau.clone() for n, m in layers.items()}
    for d in (layers, twin):
        d["l0"].set_qat(True)
        d["g"].set_qat(True)
        with torch.no_grad():
            for m in d.values():
                m.weight.mul_(1.3)  # the weights moved: the update has work to do
    compiled = ScaleKeeper(layers, compile=True, backend="aot_eager")
    with torch._dynamo.config.patch(error_on_recompile=True):
        compiled.update()
        layers["l1"].set_qat(True)
        compiled.update()
    eager = ScaleKeeper(twin)
    eager.update()
    twin["l1"].set_qat(True)
    eager.update()
    assert all(torch.equal(layers[n].tau, twin[n].tau) for n in layers)
    assert all(not torch.equal(layers[n].tau, fitted[n]) for n in layers)


def test_qat_switch_does_not_recompile_the_training_graph(make_job: Callable[..., TrainJob]) -> None:
    """The trainer's compiled forward/backward is compiled once: group switches and τ updates add no graph."""
    torch._dynamo.reset()
    job = make_job(model={"depth": 2, "pattern": "G"})  # attention-only groups: a short trace
    trainer = Trainer(job, DistEnv())
    compiled: list[Any] = []

    def counting_backend(gm: torch.fx.GraphModule, _inputs: Any) -> Callable[..., Any]:
        compiled.append(gm)
        return gm.forward

    trainer.fwd = torch.compile(trainer.model, backend=counting_backend)
    trainer._train_step(trainer.loader.next_step())
    first = len(compiled)
    for i in range(len(trainer.groups)):  # deepest group first, then all on
        trainer._switch_group(i, 0.5)
        trainer._train_step(trainer.loader.next_step())
        trainer.scales.update()
        trainer._train_step(trainer.loader.next_step())
    assert len(trainer.groups) == 2 and first >= 1 and len(compiled) == first
    assert all(m.qat for m in qlinears(trainer.model))


def _learned_q2(job: TrainJob) -> TrainJob:
    """The job with every q2 rule of plan "q2" turned into a learned scale."""
    base = named_plan("q2")
    rules = tuple(
        dataclasses.replace(r, spec=QuantSpec(kind="q2", scale="learned")) if r.spec.kind == "q2" else r
        for r in base.rules
    )
    plan = dataclasses.replace(base, name="q2-learned", rules=rules)
    return dataclasses.replace(job, model=dataclasses.replace(job.model, arm="geode", plan=plan))


def test_learned_scales_train_in_their_own_adamw_group(make_job: Callable[..., TrainJob]) -> None:
    """Learned τ are a no-decay AdamW group at optim.scale_lr, and no other group holds them."""
    trainer = Trainer(_learned_q2(make_job()), DistEnv())
    taus = {id(p) for p in trainer.scales.learned_params()}
    groups = [g for opt in trainer.optimizers for g in opt.param_groups]
    own = [g for g in groups if {id(p) for p in g["params"]} == taus]
    assert taus and len(own) == 1 and own[0]["lr"] == trainer.job.optim.scale_lr
    assert own[0]["weight_decay"] == 0.0
    assert sum(id(p) in taus for g in groups for p in g["params"]) == len(taus)


def test_learned_scales_move_and_round_trip_through_the_artifact(
    make_job: Callable[..., TrainJob], tmp_path: Path
) -> None:
    """After training, learned τ differ from the MSE fit (not refitted at the end) and pack → load keeps them."""
    from golfmodel.q2bn.artifact import load_model, pack_model

    job = _learned_q2(make_job(train={"max_steps": 8}))
    train(job)
    model, _ = load_final(Path(job.out_dir) / "final.pt")
    layers = qlinears(model)
    assert layers and all(m.scale_learned and m.qat for m in layers)
    fitted = [m.kind.fit_scale(m.weight.detach()) for m in layers]
    assert any(not torch.equal(m.stored_scale(), f) for m, f in zip(layers, fitted, strict=True))
    pack_model(
        model,
        tmp_path / "m.q2bn",
        meta={"tokenizer": {"id": "sp1024", "vocab_size": 1024}, "settings_hash": "test"},
    )
    loaded, _ = load_model(tmp_path / "m.q2bn")
    for a, b in zip(layers, qlinears(loaded), strict=True):
        assert torch.equal(b.stored_scale(), a.stored_scale())
        assert torch.equal(b.weight.detach(), a.effective_weight())


def test_learned_scales_resume_from_a_checkpoint_exactly(
    make_job: Callable[..., TrainJob], tmp_path: Path
) -> None:
    """A run resumed from its step-4 checkpoint ends with the same learned τ (and Adam state) as the unbroken run."""
    import shutil

    job = _learned_q2(make_job("whole", train={"max_steps": 8, "checkpoint_every": 4}))
    train(job)
    again = dataclasses.replace(job, out_dir=str(tmp_path / "resumed"))
    (tmp_path / "resumed" / "ckpt").mkdir(parents=True)
    shutil.copy(Path(job.out_dir) / "ckpt" / "step_000004.pt", tmp_path / "resumed" / "ckpt")
    train(again, resume=True)
    whole, _ = load_final(Path(job.out_dir) / "final.pt")
    resumed, _ = load_final(tmp_path / "resumed" / "final.pt")
    for a, b in zip(qlinears(whole), qlinears(resumed), strict=True):
        assert a.scale_learned and torch.equal(a.tau, b.tau)
