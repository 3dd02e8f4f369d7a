"""The distributed token loader: disjoint rank slices, world-size-independent batches, resumable position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from golfmodel.data.shards import read_shard
from golfmodel.train.data import TokenLoader


def _loader(shard: Path, rank: int = 0, world: int = 1, micro: int = 2) -> TokenLoader:
    return TokenLoader(
        [shard], seq_len=16, batch_seqs=8, micro_batch_seqs=micro, rank=rank, world_size=world, seed=3
    )


def _rows(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> set[bytes]:
    return {row.numpy().tobytes() for x, _ in batches for row in x}


def test_ranks_split_the_same_global_batch_disjointly(train_shard: Path) -> None:
    """Two ranks read disjoint sequences whose union is what one process reads for the same step."""
    one = _loader(train_shard, micro=4)
    r0, r1 = _loader(train_shard, 0, 2), _loader(train_shard, 1, 2)
    for _ in range(3):
        a, b, ref = r0.next_step(), r1.next_step(), one.next_step()
        assert len(a) == len(b) == 2 and len(ref) == 2  # grad accumulation fills the global batch
        assert not (_rows(a) & _rows(b))
        assert _rows(a) | _rows(b) == _rows(ref)


def test_targets_are_the_next_tokens(train_shard: Path) -> None:
    """y is x shifted by one position, read from the shard itself."""
    tokens = np.asarray(read_shard(train_shard))
    x, y = _loader(train_shard).next_step()[0]
    assert x.dtype == torch.int64 and x.shape == (2, 16)
    torch.testing.assert_close(x[:, 1:], y[:, :-1])
    n = (len(tokens) - 1) // 16
    windows = tokens[: n * 16].reshape(n, 16)  # the shard's sequences
    (j,) = np.flatnonzero((windows == x[0].numpy()).all(1))[:1]
    assert (tokens[j * 16 + 1 : j * 16 + 17] == y[0].numpy()).all()


def test_loader_resumes_at_the_saved_position(train_shard: Path) -> None:
    """A loader restored from state_dict() yields exactly what the original yields next, across an epoch end."""
    a = TokenLoader([train_shard], seq_len=4096, batch_seqs=64, micro_batch_seqs=64, seed=1)
    a.next_step()
    b = TokenLoader([train_shard], seq_len=4096, batch_seqs=64, micro_batch_seqs=64, seed=1)
    b.load_state_dict(a.state_dict())
    for _ in range(3):  # 153 sequences = 2 steps per epoch: the 2nd of these starts epoch 1
        (xa, _), (xb, _) = a.next_step()[0], b.next_step()[0]
        torch.testing.assert_close(xa, xb)
    assert a.epoch == 1
