"""Source adapters: native metadata rows in, normalized :class:`~core.records.Record` out."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
