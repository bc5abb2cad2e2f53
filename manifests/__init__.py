"""Source adapters: native metadata rows in, normalized :class:`~manifests.records.Record` out."""
