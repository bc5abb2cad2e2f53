"""Source adapters: native metadata rows in, normalized :class:`~core.records.Record` out."""
