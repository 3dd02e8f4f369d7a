"""Row-wise code packing for the storage kinds: b-bit fields and base-3 trits (docs/q2bn.md).

    pack_bits(codes (out, in) uint8 < 2^b, b)  → (out, ceil(in·b/8)) uint8; fields MSB-first,
                                                  the first code in the highest bits, zero padding
    pack_trits(codes (out, in) uint8 < 3)       → (out, ceil(in/5)) uint8; byte = Σ c_i·3^(4-i)
                                                  over 5 codes (the first most significant), pad 0

Both are vectorised (one pass of shifts over the whole tensor, no loop over rows or elements),
and each row starts on a byte boundary, so one row can be read without the others. The q2 kind
keeps its own Gray packing (`golfmodel/quant/q2.py`), which is `pack_bits` of the Gray codes.
"""

from __future__ import annotations

import torch
from torch import Tensor

_POW3 = (81, 27, 9, 3, 1)


def bits_row_bytes(in_features: int, bits: int) -> int:
    return (in_features * bits + 7) // 8


def trits_row_bytes(in_features: int) -> int:
    return (in_features + 4) // 5


def _check(codes: Tensor, what: str) -> None:
    if codes.ndim != 2 or codes.dtype != torch.uint8:
        raise ValueError(f"{what} expects uint8 (out, in) codes, got {codes.dtype} {tuple(codes.shape)}")


def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """Pack b-bit codes (out, in) uint8 into bytes per row, MSB-first."""
    _check(codes, "pack_bits")
    out, n = codes.shape
    if bits == 8:
        return codes.clone()
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.uint8, device=codes.device)
    bit = (codes[:, :, None] >> shifts) & 1  # (out, in, bits), highest bit first
    nb = bits_row_bytes(n, bits)
    flat = torch.zeros(out, nb * 8, dtype=torch.uint8, device=codes.device)
    flat[:, : n * bits] = bit.reshape(out, n * bits)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=codes.device)
    return (flat.view(out, nb, 8) * weights).sum(2, dtype=torch.uint8)  # (out, nb); no carry: bits differ


def unpack_bits(packed: Tensor, in_features: int, bits: int) -> Tensor:
    """Inverse of pack_bits: (out, ceil(in·b/8)) uint8 → codes (out, in) uint8 (padding dropped)."""
    _check(packed, "unpack_bits")
    out, nb = packed.shape
    if nb != bits_row_bytes(in_features, bits):
        raise ValueError(f"packed rows hold {nb} bytes, expected {bits_row_bytes(in_features, bits)}")
    if bits == 8:
        return packed.clone()
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    bit = ((packed[:, :, None] >> shifts) & 1).reshape(out, nb * 8)[:, : in_features * bits]
    bit = bit.reshape(out, in_features, bits)
    place = torch.tensor([1 << (bits - 1 - i) for i in range(bits)], dtype=torch.uint8, device=packed.device)
    return (bit * place).sum(2, dtype=torch.uint8)


def padding_bits_zero(packed: Tensor, in_features: int, bits: int) -> bool:
    """True when every row's bits past in·b are 0."""
    pad = bits_row_bytes(in_features, bits) * 8 - in_features * bits
    if pad == 0 or packed.shape[0] == 0:
        return True
    return bool(((packed[:, -1] & ((1 << pad) - 1)) == 0).all())


def pack_trits(codes: Tensor) -> Tensor:
    """Pack base-3 codes (out, in) uint8 in {0,1,2}, 5 per byte (3^5 = 243 ≤ 256)."""
    _check(codes, "pack_trits")
    out, n = codes.shape
    nb = trits_row_bytes(n)
    flat = torch.zeros(out, nb * 5, dtype=torch.uint8, device=codes.device)
    flat[:, :n] = codes
    pow3 = torch.tensor(_POW3, dtype=torch.uint8, device=codes.device)
    return (flat.view(out, nb, 5) * pow3).sum(2, dtype=torch.uint8)  # ≤ 2·121 = 242


def unpack_trits(packed: Tensor, in_features: int) -> Tensor:
    """Inverse of pack_trits (bytes above 242 give codes ≥ 3, which `trits_valid` rejects)."""
    _check(packed, "unpack_trits")
    out, nb = packed.shape
    if nb != trits_row_bytes(in_features):
        raise ValueError(f"packed rows hold {nb} bytes, expected {trits_row_bytes(in_features)}")
    pow3 = torch.tensor(_POW3, dtype=torch.int16, device=packed.device)
    digits = (packed.to(torch.int16)[:, :, None] // pow3) % 3  # (out, nb, 5)
    digits[:, :, 0] = packed.to(torch.int16) // 81  # the leading trit keeps any overflow (≥ 3)
    return digits.reshape(out, nb * 5)[:, :in_features].to(torch.uint8)


def trits_valid(packed: Tensor, in_features: int) -> bool:
    """Every byte ≤ 242 and every padding trit 0."""
    if packed.numel() == 0:
        return True
    if bool((packed > 242).any()):
        return False
    pad = trits_row_bytes(in_features) * 5 - in_features
    return pad == 0 or bool((packed[:, -1].to(torch.int16) % (3**pad) == 0).all())
