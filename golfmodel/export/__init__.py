"""golfmodel.export: the challenge records folder and the single-file train_gpt.py."""
