"""Running a build: the start check, local worker processes, progress, and the end-to-end run."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
