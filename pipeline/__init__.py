"""The Beam pipeline that builds the corpus: spec, options, graph, CLI, summary."""
