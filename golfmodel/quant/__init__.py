"""golfmodel.quant: quantisation as data (SPEC §4 rev. 2) — specs, one class per storage kind, plans, QAT layers.

spec.py      QuantSpec(kind, bits, group_size, scale): how one tensor is stored
kind.py      QuantKind: the interface (grid, scale fit / Lloyd update, STE + LSQ, encode / decode, bytes)
kinds.py     Q2Kind, TernaryKind, IntKind, FP8Kind, FloatKind and kind_for(spec)
qlinear.py   QLinear (any kind; tensor QAT switch; learned scales), Q2Linear (the q2 case), make_linear
plan.py      QuantRule / QuantPlan, the one table of named plans and arm aliases
assign.py    plan_linears (the models' layer factory), slot_for / storage_specs (which tensor gets which spec)
q2.py        the Q² grid: exact τ solve, symbols, Gray packing (used by Q2Kind)
int8.py      per-row int8 (the same rule as int8:absmax; kept for callers of quantize_rows)
bitpack.py   b-bit and base-3 row packing
q2linear.py  old import path of Q2Linear
"""
