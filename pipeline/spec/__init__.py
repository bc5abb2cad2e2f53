"""The corpus spec: the YAML model, its loading and checks, and the Beam options a run passes through."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
