"""golfmodel/model."""
