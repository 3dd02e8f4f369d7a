"""golfmodel.quant: the Q² 2-bit row quantiser and per-row int8 (SPEC §4).

q2.py        fit_tau, symbols, dequant, fake_quant (masked STE), Gray code, pack_rows / unpack_rows
q2linear.py  Q2Linear: fp32 shadow weight + fp16-representable τ buffer, QAT switch
int8.py      quantize_rows / dequantize_rows: per-row symmetric int8 with fp16 scales
"""
