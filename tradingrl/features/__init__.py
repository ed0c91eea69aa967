"""Past-only technical features, forward labels with end times, and their contract."""
