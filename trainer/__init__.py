"""The bundled CLAP trainer that reads the pipeline's shards."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
