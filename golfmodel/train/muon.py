"""Muon (momentum orthogonalised by Newton–Schulz) for block matrices, AdamW for the rest.

Muon after Keller Jordan's modded-nanogpt (https://kellerjordan.github.io/posts/muon/): keep a
Nesterov momentum of the gradient, replace the update by the nearest semi-orthogonal matrix
(≈ U Vᵀ of its SVD) via a quintic Newton–Schulz iteration with coefficients
(3.4445, −4.7750, 2.0315), and scale by max(1, rows/cols)^0.5. The iteration runs in bf16 on
GPU (compiled) and fp32 on CPU (eager).

Scaling across ranks, as modded-nanogpt's distributed Muon does (its `Muon.step` in
records/track_2_medium/2024-12-31_Target350M/train_gpt.py: parameters grouped by size, each rank
orthogonalises its share, `dist.all_gather` of the updates): matrices of equal shape form a
bucket and are orthogonalised together as one batched matmul chain; with W ranks each rank takes
a contiguous 1/W of every bucket (zero-padded to a multiple of W), and one
all-gather per bucket, launched asynchronously so the next bucket's iteration
overlaps it, hands every rank all updates. Under DDP the gradients are already averaged when
`step()` runs, so every rank applies the same update; the momentum of every matrix is kept on
every rank (cheap, elementwise) so a rank-0 checkpoint holds the whole optimiser state. No host
syncs in `step()`. Our own code rather than `torch.optim.Muon`: docs/decisions/train.md says why.

AdamW takes embeddings, the untied head, norms, gains, time constants (log_dt) and biases.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from golfmodel.train.config import OptimConfig

NS_COEFFS = (3.4445, -4.7750, 2.0315)

# parameter-name parts that mark a 2-D matrix as an embedding/head (AdamW, not Muon)
_EMBED_PARTS = frozenset({"embed", "embedding", "tok_emb", "wte", "head", "lm_head", "output", "bigram"})

NSFn = Callable[[torch.Tensor, int], torch.Tensor]


def newton_schulz_batched(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Orthogonalise each matrix of a stack: g (n, rows, cols) -> ≈ U Vᵀ per matrix, (n, rows, cols).

    The result is in the compute dtype: bf16 on CUDA (what is all-gathered), fp32 elsewhere.
    An all-zero matrix (a padding slot) stays zero.
    """
    if g.ndim != 3:
        raise ValueError(f"newton_schulz_batched expects (n, rows, cols), got shape {tuple(g.shape)}")
    a, b, c = NS_COEFFS
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    transposed = g.size(1) > g.size(2)
    if transposed:  # iterate on the wide orientation: X Xᵀ is the smaller Gram matrix
        x = x.mT
    # spectral norm <= Frobenius norm <= 1: inside the iteration's basin
    x = x / (x.norm(dim=(1, 2), keepdim=True) + eps)  # (n, r, c)
    for _ in range(steps):
        A = x @ x.mT  # (n, r, r)
        B = b * A + c * (A @ A)  # (n, r, r)
        x = a * x + B @ x  # (n, r, c)
    return x.mT if transposed else x


@functools.cache
def _compiled_ns() -> NSFn:
    # one graph per bucket shape (four on h100x8); dynamic=False: shapes are fixed for the run
    return torch.compile(newton_schulz_batched, dynamic=False, fullgraph=True)


def ns_function(device: torch.device) -> NSFn:
    """The Newton–Schulz implementation for a device: torch.compile'd on CUDA, eager elsewhere."""
    return _compiled_ns() if device.type == "cuda" else newton_schulz_batched


@torch.no_grad()
def newton_schulz(g: torch.Tensor, steps: int = 5, *, eps: float = 1e-7) -> torch.Tensor:
    """Approximately orthogonalise a 2-D matrix: returns ≈ U Vᵀ (singular values pushed near 1).

    Runs in bf16 on CUDA, fp32 elsewhere (eager); the result has g's dtype.
    """
    if g.ndim != 2:
        raise ValueError(f"newton_schulz expects a 2-D matrix, got shape {tuple(g.shape)}")
    return newton_schulz_batched(g[None], steps, eps)[0].to(g.dtype)


def _all_gather(out: torch.Tensor, local: torch.Tensor, *, async_op: bool) -> dist.Work | None:
    """Concatenate every rank's `local` into `out`: `all_gather_single` (torch >= 2.13, which deprecates the
    old name) or `all_gather_into_tensor` (the GPU image's torch 2.11)."""
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    return gather(out, local, async_op=async_op)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int, int]:
    """(lo, hi, k): rank's contiguous share [lo, hi) of n matrices, k = ceil(n / world_size) slots each."""
    k = math.ceil(n / world_size)
    lo = min(n, rank * k)
    return lo, min(n, lo + k), k


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters: Nesterov momentum → Newton–Schulz → scaled step (+ decoupled weight decay).

    Equal-shaped matrices of a parameter group are orthogonalised as one batch; with
    world_size > 1 (an initialised process group) the batch is split across ranks and all-gathered.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        *,
        lr: float,
        momentum: float = 0.95,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        nesterov: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, ns_steps=ns_steps, weight_decay=weight_decay, nesterov=nesterov
        )
        super().__init__(params, defaults)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"Muon: rank {rank} is not inside world_size {world_size}")
        if world_size > 1 and not dist.is_initialized():
            raise RuntimeError(f"Muon: world_size={world_size} needs an initialised process group")
        self.rank, self.world_size = rank, world_size
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        f"Muon takes 2-D matrices only, got a parameter of shape {tuple(p.shape)}"
                    )
        self.warm_up()

    @torch.no_grad()
    def warm_up(self) -> None:
        """Compile the CUDA Newton–Schulz graph of every bucket shape now (the optimiser is built before
        the training clock starts), on zeros; no state changes. A no-op on CPU (eager)."""
        for group in self.param_groups:
            for bucket in self.buckets(group):
                p = bucket[0]
                if p.device.type != "cuda":
                    continue
                k = len(bucket) if self.world_size == 1 else shard_bounds(len(bucket), 0, self.world_size)[2]
                ns_function(p.device)(
                    torch.zeros((k, *p.shape), dtype=p.dtype, device=p.device), group["ns_steps"]
                )

    def buckets(self, group: dict[str, Any]) -> list[list[nn.Parameter]]:
        """A group's matrices by (shape, dtype, device), in parameter order within each bucket."""
        by_key: dict[tuple[Any, ...], list[nn.Parameter]] = {}
        for p in group["params"]:
            by_key.setdefault((tuple(p.shape), p.dtype, p.device), []).append(p)
        return list(by_key.values())

    def _orthogonalise(
        self, dirs: Sequence[torch.Tensor], steps: int
    ) -> tuple[torch.Tensor, dist.Work | None]:
        """This rank's share of the bucket orthogonalised, gathered into (n_padded, r, c) (async when W > 1)."""
        ns = ns_function(dirs[0].device)
        if self.world_size == 1:
            return ns(torch.stack(dirs), steps), None  # (n, r, c)
        lo, hi, k = shard_bounds(len(dirs), self.rank, self.world_size)
        r, c = dirs[0].shape
        mine = torch.zeros(k, r, c, dtype=dirs[0].dtype, device=dirs[0].device)  # (k, r, c), pad = 0
        if hi > lo:
            mine[: hi - lo] = torch.stack(list(dirs[lo:hi]))
        local = ns(mine, steps).contiguous()  # (k, r, c)
        out = torch.empty((k * self.world_size, r, c), dtype=local.dtype, device=local.device)
        work = _all_gather(out, local, async_op=True)
        return out, work

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's Optimizer signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pending = []  # (params, update stack, work, lr, wd, scale): applied after every bucket is launched
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            for bucket in self.buckets(group):
                params = [p for p in bucket if p.grad is not None]  # the same set on every rank (DDP)
                if not params:
                    continue
                grads = [p.grad for p in params]
                bufs = []
                for p, g in zip(params, grads, strict=True):
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(g)
                    bufs.append(state["momentum_buffer"])
                torch._foreach_mul_(bufs, mom)
                torch._foreach_add_(bufs, grads)  # buf = μ·buf + g
                dirs = torch._foreach_add(grads, bufs, alpha=mom) if group["nesterov"] else bufs
                update, work = self._orthogonalise(dirs, group["ns_steps"])
                scale = max(1.0, params[0].size(0) / params[0].size(1)) ** 0.5
                pending.append((params, update, work, lr, wd, scale))
        for params, update, work, lr, wd, scale in pending:
            if work is not None:
                work.wait()  # on NCCL: the compute stream waits for the gather, the host does not
            upd = list(update[: len(params)].to(params[0].dtype).unbind(0))  # n x (r, c)
            if wd:
                torch._foreach_mul_(params, 1.0 - lr * wd)
            torch._foreach_add_(params, upd, alpha=-lr * scale)
        return loss


def split_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """(muon, adam_decay, adam_no_decay): Linear weights of the blocks go to Muon; embedding/head
    matrices to AdamW with weight decay; everything else (norms, gains, log_dt, biases, control
    tensors such as gpt-int8's resid_mix) to AdamW without.
    """
    muon: list[nn.Parameter] = []
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    embed_weights = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)
    }  # incl. a tied head
    for name, p in model.named_parameters():
        if id(p) in seen or not p.requires_grad:
            continue  # tied parameters appear once
        seen.add(id(p))
        parts = set(name.lower().replace("_", ".").split(".")) | set(name.lower().split("."))
        if (
            p.ndim == 2
            and id(p) in linear_weights
            and id(p) not in embed_weights
            and not (parts & _EMBED_PARTS)
        ):
            muon.append(p)
        elif id(p) in linear_weights or id(p) in embed_weights:
            decay.append(p)
        else:
            no_decay.append(p)
    return muon, decay, no_decay


def build_optimizers(
    model: nn.Module, cfg: OptimConfig, *, rank: int = 0, world_size: int = 1
) -> list[torch.optim.Optimizer]:
    """[Muon, AdamW] (either omitted when it would hold no parameter). Each group keeps `base_lr`.

    rank/world_size: where this process sits; Muon splits its Newton–Schulz work across the ranks.
    """
    muon_p, decay_p, no_decay_p = split_params(model)
    opts: list[torch.optim.Optimizer] = []
    if muon_p:
        m = Muon(
            muon_p,
            lr=cfg.muon_lr,
            momentum=cfg.muon_momentum,
            ns_steps=cfg.ns_steps,
            weight_decay=cfg.weight_decay,
            rank=rank,
            world_size=world_size,
        )
        for g in m.param_groups:
            g["base_lr"] = cfg.muon_lr
        opts.append(m)
    groups = []
    if decay_p:
        groups.append({"params": decay_p, "weight_decay": cfg.weight_decay})
    if no_decay_p:
        groups.append({"params": no_decay_p, "weight_decay": 0.0})
    if groups:
        a = torch.optim.AdamW(
            groups, lr=cfg.adam_lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, fused=False
        )
        for g in a.param_groups:
            g["base_lr"] = cfg.adam_lr
        opts.append(a)
    return opts


def set_lr(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    """lr = base_lr · multiplier for every parameter group."""
    for opt in optimizers:
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * multiplier
