"""Budget solver: the largest model of an arm (by parameter count) whose packed artifact fits a byte budget.

    plan = solve("q2-geode", 1024, 16_000_000)        # groups 1..4, width, MLP fill; packed to confirm
    plan = solve("gpt-int8", 1024, 16_000_000, groups=9)

Search (SPEC §6). For each depth (Geode groups for q2-geode, layers for gpt-int8; `groups`
fixes it, else 1..`max_depth`):
1. width: binary search over the widths `head_shape` can split (multiples of 16 from 32 with
   an even head count and head_dim % 8 == 0, e.g. 576 and 624 but not 592 or 608) for the
   widest model whose estimate fits. The estimate (probe.py) is exact before compression — the
   payload of every stored tensor at its storage kind, from a model built on the meta device,
   plus record headers — times a compression ratio (a prior, then the measured one).
2. MLP fill (`mlp_fill`, on by default): the next valid width is often 10-20% more bytes away,
   so the SwiGLU / relu² hidden layer is widened in steps of 16 (up to 1.5x its base ratio) into
   the bytes left over. This keeps width on the spec's 16-step grid and still fills the budget.
3. confirmation: the chosen point is packed for real (Q2BN + zstd-22 for q2-geode, the
   baseline's int8 + zlib-9 for gpt-int8) as a randomly initialised model; the measured ratio
   re-aims the MLP width, which then steps down until the artifact fits and up while the next
   step still fits. Other depths are confirmed only if their estimate could change the choice.
`budget_bytes` covers the artifact plus `code_bytes` (the shipped code, SPEC §5).

Depth: bytes grow as depth·d² while the int8 embedding (V·d) costs more per parameter than a
2-bit weight, so "most parameters" alone keeps preferring deeper, narrower models. The depth
range is therefore capped at the spec's full-scale shapes (4 Geode groups, the baseline's 9
layers) and, within it, a deeper model within 2% of the most parameters wins. At sp1024 and
16,000,000 bytes this gives 4 groups for q2-geode and exactly the baseline's 9 x 512 for gpt-int8.

Random weights stand in for trained ones (probe.random_model): Gaussian rows give the 2-bit
symbols their typical skew (p ≈ 0.16/0.34/0.34/0.16, ~1.9 bits of entropy) and the int8 rows a
full-range Gaussian spread, so zstd/zlib see realistic statistics (the random naive baseline
packs 0.4% larger than the trained one). Trained weights with heavier tails or structure may
compress differently: a plan that fills 99.9% leaves no slack, so pass the real `code_bytes`
and keep a margin when it matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golfmodel.model.config import ARMS, ModelConfig, head_shape
from golfmodel.model.probe import Estimate, Packer, estimate, int8zlib_packer, measure, random_model

__all__ = [
    "BudgetError",
    "Plan",
    "estimate",
    "make_config",
    "measure",
    "random_model",
    "solve",
    "valid_widths",
]

WIDTH_STEP = 16
MIN_WIDTH = 32  # 2 heads of 16
MAX_WIDTH = 8192
DEFAULT_MAX_DEPTH = {"q2-geode": 4, "gpt-int8": 9}
DEFAULT_MLP_MULT = {"q2-geode": 8 / 3, "gpt-int8": 2.0}
# Compressed / raw artifact before any measurement (measured on random models: zstd-22 gains
# ~4% on Gaussian-row 2-bit symbols, zlib-9 ~8% on full-range int8 rows). Only the starting
# point: confirmation measures it.
PRIOR_RATIO = {"q2-geode": 0.96, "gpt-int8": 0.92}
MAX_CONFIRMS = 24  # packs per solve(); a 16 MB pack takes ~5-15 s on CPU
DEPTH_TOLERANCE = 0.02  # a deeper model within 2% of the most parameters is preferred
MLP_FILL_MAX = 1.5  # mlp_fill grows the MLP hidden layer to at most 1.5x its base (SwiGLU 8/3 -> 4)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A solved shape: `artifact_bytes` (packed, compressed) + `code_bytes` ≤ `budget_bytes`."""

    config: ModelConfig
    params: int
    artifact_bytes: int
    code_bytes: int
    budget_bytes: int
    fill: float  # (artifact_bytes + code_bytes) / budget_bytes
    estimate_bytes: int  # analytic estimate of the compressed artifact
    confirmed: bool  # artifact_bytes measured with the real packer
    breakdown: dict[str, int] = field(default_factory=dict)  # raw payload bytes per storage kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.config.arm,
            "params": self.params,
            "artifact_bytes": self.artifact_bytes,
            "code_bytes": self.code_bytes,
            "budget_bytes": self.budget_bytes,
            "fill": round(self.fill, 6),
            "estimate_bytes": self.estimate_bytes,
            "confirmed": self.confirmed,
            "breakdown": dict(self.breakdown),
            "config": self.config.to_dict(),
        }


def make_config(
    arm: str,
    vocab: int,
    d_model: int,
    depth: int,
    *,
    pattern: str = "GCCC",
    head_dim: int = 64,
    bigram_prior: bool = False,
    mlp_mult: float | None = None,
    sub_norm: bool = False,
) -> ModelConfig:
    """The config the solver uses for a (width, depth) point: heads by `head_shape`, arm's MLP ratio."""
    n_heads, n_kv = head_shape(d_model, head_dim)
    return ModelConfig(
        arm=arm,
        vocab_size=vocab,
        d_model=d_model,
        depth=depth,
        pattern=pattern,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        mlp_mult=DEFAULT_MLP_MULT[arm] if mlp_mult is None else mlp_mult,
        bigram_prior=bigram_prior,
        sub_norm=sub_norm,
    )


Point = tuple[int, int, int]  # (depth, d_model, mlp hidden)


class BudgetError(ValueError):
    """No model of the arm fits the budget (the message gives the budget, code bytes and arm)."""


class _Search:
    """Estimates and real packs of (depth, width, MLP hidden) points of one solve() call, cached."""

    def __init__(
        self,
        arm: str,
        vocab: int,
        target: int,
        *,
        pattern: str,
        head_dim: int,
        bigram_prior: bool,
        mlp_mult: float | None,
        mlp_fill: bool,
        packer: Packer | None,
        int8_config: Any,
        bigram_logprior: Any = None,
        sub_norm: bool = False,
    ) -> None:
        self.arm, self.vocab, self.target = arm, vocab, target
        self.sub_norm = sub_norm
        self.bigram_logprior = bigram_logprior
        self.pattern, self.head_dim, self.bigram_prior = pattern, head_dim, bigram_prior
        self.mult = DEFAULT_MLP_MULT[arm] if mlp_mult is None else mlp_mult
        self.mlp_fill = mlp_fill
        self.int8_config = int8_config
        if packer is None and arm == "gpt-int8" and int8_config is not None:
            packer = int8zlib_packer(int8_config)
        self.packer = packer
        self.widths = valid_widths(head_dim)
        self._est: dict[Point, Estimate] = {}
        self.measured: dict[Point, int] = {}

    def base_hidden(self, d: int) -> int:
        return make_config(self.arm, self.vocab, d, 1, pattern=self.pattern, mlp_mult=self.mult).mlp_hidden

    def max_hidden(self, d: int) -> int:
        """The widest MLP mlp_fill may use: MLP_FILL_MAX x the base hidden width, in steps of 16."""
        base = self.base_hidden(d)
        return base + WIDTH_STEP * int((MLP_FILL_MAX - 1) * base // WIDTH_STEP)

    def config(self, p: Point) -> ModelConfig:
        depth, d, h = p
        cfg = make_config(
            self.arm,
            self.vocab,
            d,
            depth,
            pattern=self.pattern,
            head_dim=self.head_dim,
            bigram_prior=self.bigram_prior,
            mlp_mult=self.mult if h == self.base_hidden(d) else h / d,
            sub_norm=self.sub_norm,
        )
        assert cfg.mlp_hidden == h, (cfg.mlp_hidden, h)
        return cfg

    def est(self, p: Point) -> Estimate:
        if p not in self._est:
            self._est[p] = estimate(self.config(p), int8_config=self.int8_config)
        return self._est[p]

    def fits_est(self, p: Point, ratio: float) -> bool:
        return self.est(p).raw_bytes * ratio <= self.target

    def real(self, p: Point) -> int:
        if p not in self.measured:
            if len(self.measured) >= MAX_CONFIRMS:
                raise RuntimeError(f"solve: no settled fit after {MAX_CONFIRMS} packs (estimate far off?)")
            self.measured[p] = measure(self.config(p), self.packer, bigram_logprior=self.bigram_logprior)
        return self.measured[p]

    def ratio_at(self, p: Point) -> float:
        return self.real(p) / self.est(p).raw_bytes

    def widest(self, depth: int, ratio: float) -> int | None:
        """Index in `widths` of the widest base-MLP model whose estimate fits (None: none fits)."""
        w = self.widths
        if not self.fits_est((depth, w[0], self.base_hidden(w[0])), ratio):
            return None
        lo, hi = 0, len(w)  # invariant: w[lo] fits, w[hi] (if any) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (
                (mid, hi) if self.fits_est((depth, w[mid], self.base_hidden(w[mid])), ratio) else (lo, mid)
            )
        return lo

    def top_up(self, depth: int, d: int, ratio: float) -> int:
        """Largest MLP hidden (base + 16k) at (depth, d) whose estimate fits; the base one without mlp_fill."""
        h = self.base_hidden(d)
        if not self.mlp_fill:
            return h
        step = self.est((depth, d, h + WIDTH_STEP)).raw_bytes - self.est((depth, d, h)).raw_bytes
        room = self.target / ratio - self.est((depth, d, h)).raw_bytes
        cap = self.max_hidden(d)
        h = min(cap, h + WIDTH_STEP * max(0, int(room // max(step, 1))))
        while h > self.base_hidden(d) and not self.fits_est((depth, d, h), ratio):
            h -= WIDTH_STEP
        while h + WIDTH_STEP <= cap and self.fits_est((depth, d, h + WIDTH_STEP), ratio):
            h += WIDTH_STEP
        return h

    def predict(self, depth: int, ratio: float) -> Point | None:
        i = self.widest(depth, ratio)
        if i is None:
            return None
        d = self.widths[i]
        return (depth, d, self.top_up(depth, d, ratio))

    def confirm(self, depth: int, ratio: float) -> Point | None:
        """The largest point at `depth` whose real artifact fits, starting from the prediction at `ratio`."""
        i = self.widest(depth, ratio)
        if i is None:
            return None
        return self._walk_mlp(depth, i, ratio) if self.mlp_fill else self._walk_width(depth, i)

    def _walk_width(self, depth: int, i: int) -> Point | None:
        """Base MLP: step the width down until it fits, then up while the next width fits."""
        points = [(depth, d, self.base_hidden(d)) for d in self.widths]
        while i >= 0 and self.real(points[i]) > self.target:
            i -= 1
        if i < 0:
            return None
        while i + 1 < len(points) and self.real(points[i + 1]) <= self.target:
            i += 1
        return points[i]

    def _walk_mlp(self, depth: int, i: int, ratio: float) -> Point | None:
        """Width from the estimate; the MLP re-aimed with the measured ratio, then stepped to the edge."""
        while i >= 0:
            d, base = self.widths[i], self.base_hidden(self.widths[i])
            p = (depth, d, self.top_up(depth, d, ratio))
            for _ in range(3):
                q = (depth, d, self.top_up(depth, d, self.ratio_at(p)))
                if q == p:
                    break
                p = q
            while self.real(p) > self.target and p[2] > base:
                p = (depth, d, p[2] - WIDTH_STEP)  # down, but not below the base MLP
            if self.real(p) > self.target:  # even the base MLP is too big: next narrower width
                ratio = self.ratio_at(p)
                i -= 1
                continue
            while (
                p[2] + WIDTH_STEP <= self.max_hidden(d)
                and self.real((depth, d, p[2] + WIDTH_STEP)) <= self.target
            ):
                p = (depth, d, p[2] + WIDTH_STEP)
            return p
        return None


def solve(
    arm: str,
    vocab: int,
    budget_bytes: int,
    *,
    groups: int | None = None,
    pattern: str = "GCCC",
    head_dim: int = 64,
    bigram_prior: bool = False,
    code_bytes: int = 0,
    mlp_mult: float | None = None,
    mlp_fill: bool = True,
    max_depth: int | None = None,
    confirm: bool = True,
    packer: Packer | None = None,
    int8_config: Any = None,
    bigram_logprior: str | Path | Any = None,
    sub_norm: bool = False,
) -> Plan:
    """Largest model of `arm` (by params) whose artifact + `code_bytes` fits `budget_bytes`.

    groups: fixed depth (Geode groups for q2-geode, layers for gpt-int8); None searches
    1..max_depth (default 4 groups / 9 layers). mlp_mult: base MLP ratio (arm default 8/3 SwiGLU,
    2 relu²); mlp_fill widens the MLP hidden layer in steps of 16 into the bytes the width step
    leaves over. confirm=False skips the real packer and reports the estimate. packer(model, path)
    -> compressed bytes replaces the arm's packer; int8_config (an `Int8ZlibConfig`) sets the
    gpt-int8 export rules for both the estimate and the packer. bigram_logprior: the real (V, V)
    table a bigram_prior model will carry (an array, or its file as `data.bigram.load_logprior`
    reads it; it is known before training); packs then use it instead
    of a random table (byte260: ~8 KB packed for the sample's real table, ~55 KB for noise). Raises BudgetError when no model
    (width 32, depth 1 at least) fits.
    """
    if arm not in ARMS:
        raise ValueError(f"arm: must be one of {ARMS}, got {arm!r}")
    if budget_bytes <= 0 or code_bytes < 0:
        raise ValueError(f"budget_bytes: must be > 0 (and code_bytes >= 0), got {budget_bytes}, {code_bytes}")
    if groups is not None and groups < 1:
        raise ValueError(f"groups: must be >= 1, got {groups}")
    if bigram_prior and isinstance(bigram_logprior, str | Path):
        from golfmodel.data.bigram import load_logprior

        bigram_logprior = load_logprior(bigram_logprior)
    depths = [groups] if groups is not None else list(range(1, (max_depth or DEFAULT_MAX_DEPTH[arm]) + 1))
    search = _Search(
        arm,
        vocab,
        budget_bytes - code_bytes,
        pattern=pattern,
        head_dim=head_dim,
        bigram_prior=bigram_prior,
        mlp_mult=mlp_mult,
        mlp_fill=mlp_fill,
        packer=packer,
        int8_config=int8_config,
        bigram_logprior=bigram_logprior,
        sub_norm=sub_norm,
    )
    prior = PRIOR_RATIO[arm]

    def ranked(ratio: float) -> list[tuple[int, Point]]:
        """(params, point) of each depth's predicted best fit."""
        out = []
        for depth in depths:
            p = search.predict(depth, ratio)
            if p is not None:
                out.append((search.est(p).params, p))
        return out

    candidates = ranked(prior)
    if not candidates:
        raise BudgetError(
            f"budget_bytes: {budget_bytes} (code {code_bytes}) cannot hold even a width-{MIN_WIDTH} "
            f"{arm} model at vocab {vocab}"
        )
    if not confirm:
        _, p = _choose(candidates)
        e = search.est(p)
        size = round(e.raw_bytes * prior)
        return _plan(search.config(p), e, size, size, code_bytes, budget_bytes, confirmed=False)

    fits: list[tuple[int, Point]] = []  # confirmed (params, point), one per depth
    done: set[int] = set()
    ratio = prior

    def could_win(c: tuple[int, Point]) -> bool:
        return not fits or _choose([*fits, c]) == c

    while True:  # confirm the predicted choice, then any depth that could still displace it
        todo = [c for c in ranked(ratio) if c[1][0] not in done and could_win(c)]
        if not todo:
            break
        depth = _choose(todo)[1][0]
        done.add(depth)
        p = search.confirm(depth, ratio)
        if p is None:
            continue
        ratio = search.ratio_at(p)  # re-aim the other depths with the measured compression
        fits.append((search.est(p).params, p))
    if not fits:
        raise BudgetError(f"budget_bytes: {budget_bytes} (code {code_bytes}) fits no confirmed {arm} model")
    _, p = _choose(fits)
    e = search.est(p)
    return _plan(
        search.config(p), e, search.real(p), round(e.raw_bytes * prior), code_bytes, budget_bytes, True
    )


def valid_widths(head_dim: int = 64, limit: int = MAX_WIDTH) -> list[int]:
    """Multiples of 16 from MIN_WIDTH to `limit` that `head_shape` can split into heads."""
    out = []
    for d in range(MIN_WIDTH, limit + 1, WIDTH_STEP):
        try:
            head_shape(d, head_dim)
        except ValueError:
            continue
        out.append(d)
    return out


def _choose(cands: list[tuple[int, Point]]) -> tuple[int, Point]:
    """The deepest (params, point) within DEPTH_TOLERANCE of the most params (then most params, wider)."""
    most = max(c[0] for c in cands)
    return max(
        (c for c in cands if c[0] >= (1 - DEPTH_TOLERANCE) * most), key=lambda c: (c[1][0], c[0], c[1][1])
    )


def _plan(
    cfg: ModelConfig, e: Estimate, size: int, est_size: int, code: int, budget: int, confirmed: bool
) -> Plan:
    return Plan(
        config=cfg,
        params=e.params,
        artifact_bytes=size,
        code_bytes=code,
        budget_bytes=budget,
        fill=(size + code) / budget,
        estimate_bytes=est_size,
        confirmed=confirmed,
        breakdown=dict(e.breakdown),
    )
