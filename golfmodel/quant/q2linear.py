"""Old import path of `Q2Linear` (now the q2 case of `golfmodel.quant.qlinear.QLinear`)."""

from golfmodel.quant.qlinear import Q2Linear, QLinear, no_tau_init, q2_linears, qlinears

__all__ = ["Q2Linear", "QLinear", "no_tau_init", "q2_linears", "qlinears"]
