"""River-backed behavioural baselines, one profile per agent (pure: no Faust, no Kafka).

``features`` turns an event into generalized observations and quantities; ``novelty``
scores categorical values, ``rates`` window totals; ``phases`` and ``risk`` say where an
agent stands and why; ``profile.AgentProfile`` ties them together for the engine;
``frozen.FrozenAllowlist`` is the exact-set baseline kept for comparison.
"""
