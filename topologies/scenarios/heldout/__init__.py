"""Held-out scenarios: placeholder until recorded (see catalog)."""

SCENARIOS: dict = {}
