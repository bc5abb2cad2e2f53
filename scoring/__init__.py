"""CLAP scoring, one vertical slice (as k2c/ is): the spec section (config.py), what it takes from the
spec (inputs.py), the model behind RunInference (handler.py), the scoring steps without Beam
(scores.py) and the Beam stage that embeds, calibrates, scores, filters and groups near-duplicates
(stage.py)."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
