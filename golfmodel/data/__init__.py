"""golfmodel/data."""
