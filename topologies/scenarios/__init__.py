"""Scenarios for ``agentstory record``: the world the agents live in, the agents, and
the benign and attack timelines that are recorded through the real collectors."""
