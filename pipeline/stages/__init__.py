"""The Beam graph and its stages: read, fetch, exclude, deduplicate, guard against leakage, shard."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
