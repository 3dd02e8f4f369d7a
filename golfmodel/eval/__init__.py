"""golfmodel/eval."""
