"""Data: the compiled OCSF 1.5.0 schema reduced to the Detection Finding (Apache-2.0, see
LICENSE here); regenerate with ``tests/streams/build_ocsf_schema.py``."""
