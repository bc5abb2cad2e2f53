"""The Beam pipeline that builds the corpus: spec, options, graph, CLI, summary."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
