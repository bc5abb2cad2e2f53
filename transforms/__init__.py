"""Per-sample steps of the corpus pipeline: pure functions, no Beam graph code.

Everything here takes plain values in (bytes, arrays, dataclasses) and gives plain values out, so it
is tested without Beam and reused by the trainer.
"""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
