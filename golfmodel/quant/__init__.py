"""golfmodel/quant."""
