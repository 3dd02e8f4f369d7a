"""golfmodel/train."""
