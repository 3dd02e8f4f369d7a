"""golfmodel/q2bn."""
