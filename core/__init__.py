"""The contracts everything else builds on: records and rejects, the sample schema, output names,
stable hashing, audio constants. Nothing here imports another package of the project or Apache Beam.
"""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
