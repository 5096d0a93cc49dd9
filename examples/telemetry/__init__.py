"""Seed 004: satellites send their positions to a Kafka queue; a Dash page follows them live."""
