"""Per-sample steps of the corpus pipeline: pure functions, no Beam graph code.

Everything here takes plain values in (bytes, arrays, dataclasses) and gives plain values out, so it
is tested without Beam and reused by the trainer.
"""
