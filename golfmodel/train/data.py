"""Distributed training-token loader over memory-mapped shards.

Each shard is cut into sequences of `seq_len + 1` tokens (sequence j covers tokens
[j·T, j·T + T], so neighbours share one token; sequences never cross a shard end). Every
epoch visits all sequences in a seeded permutation (`default_rng([seed, epoch])`), the same
on every rank. Optimiser step s takes the next `batch_seqs` entries of that order (an
incomplete tail of an epoch is skipped); rank r takes entries r, r+W, r+2W, ... of them and
splits its share into micro-batches. The global batch is therefore the same set of
sequences for any world size, ranks read disjoint sequences, and the position
(epoch, cursor) is all a checkpoint needs to resume at the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


class TokenLoader:
    """Yields, per optimiser step, this rank's micro-batches as (x, y) int64 tensors of shape (B, T)."""

    def __init__(
        self,
        shards: Sequence[str | Path],
        *,
        seq_len: int,
        batch_seqs: int,
        micro_batch_seqs: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        vocab_size: int | None = None,
    ) -> None:
        from golfmodel.data.shards import read_shard

        if not shards:
            raise ValueError("TokenLoader: no training shards given")
        if batch_seqs % (micro_batch_seqs * world_size):
            raise ValueError(
                f"TokenLoader: batch_seqs={batch_seqs} is not a multiple of "
                f"micro_batch_seqs*world_size={micro_batch_seqs * world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"TokenLoader: rank {rank} outside world of size {world_size}")
        self.paths = [Path(s) for s in shards]
        self.tokens = [read_shard(p) for p in self.paths]  # read-only memmaps, header checked
        self.seq_len, self.batch_seqs, self.micro = seq_len, batch_seqs, micro_batch_seqs
        self.rank, self.world, self.seed, self.vocab_size = rank, world_size, seed, vocab_size
        per_shard = np.array([max(0, (len(t) - 1) // seq_len) for t in self.tokens], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(per_shard)])  # first global sequence id of each shard
        self.n_seqs = int(self.starts[-1])
        if self.n_seqs < batch_seqs:
            raise ValueError(
                f"TokenLoader: the shards hold {self.n_seqs} sequences of {seq_len + 1} tokens, "
                f"fewer than one global batch ({batch_seqs}); use fewer/shorter sequences or more data"
            )
        self.epoch, self.cursor = 0, 0
        self._order_epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    @property
    def grad_accum(self) -> int:
        return self.batch_seqs // (self.micro * self.world)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "n_seqs": self.n_seqs, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["n_seqs"]) != self.n_seqs or int(state["seed"]) != self.seed:
            raise ValueError(
                f"TokenLoader: checkpoint data position is for {state['n_seqs']} sequences / seed {state['seed']}, "
                f"these shards give {self.n_seqs} / seed {self.seed} (different data or seq_len?)"
            )
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_seqs)
            self._order_epoch = self.epoch
        return self._order

    def _gather(self, seq_ids: np.ndarray) -> np.ndarray:
        """Tokens of global sequences `seq_ids` -> (n, T+1) int64, one fancy-index per shard."""
        T = self.seq_len
        out = np.empty((len(seq_ids), T + 1), dtype=np.int64)
        shard = np.searchsorted(self.starts, seq_ids, side="right") - 1
        offsets = (seq_ids - self.starts[shard]) * T
        cols = np.arange(T + 1, dtype=np.int64)
        for s in np.unique(shard):
            rows = np.nonzero(shard == s)[0]
            out[rows] = self.tokens[s][offsets[rows, None] + cols]  # (n_s, T+1)
            if self.vocab_size is not None and out[rows].max() >= self.vocab_size:
                raise ValueError(
                    f"{self.paths[s]}: token id {int(out[rows].max())} >= vocab_size {self.vocab_size}"
                )
        return out

    def next_step(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's micro-batches for the next optimiser step; advances the position."""
        if self.cursor + self.batch_seqs > self.n_seqs:
            self.epoch, self.cursor = self.epoch + 1, 0
        ids = self._epoch_order()[self.cursor : self.cursor + self.batch_seqs]
        self.cursor += self.batch_seqs
        mine = ids[self.rank :: self.world]  # (batch_seqs / W,)
        buf = torch.from_numpy(self._gather(mine))  # (batch_seqs / W, T+1)
        return [
            (buf[i : i + self.micro, :-1], buf[i : i + self.micro, 1:])  # x, y: (micro, T)
            for i in range(0, len(mine), self.micro)
        ]
