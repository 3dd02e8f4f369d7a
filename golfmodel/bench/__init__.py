"""golfmodel/bench."""
