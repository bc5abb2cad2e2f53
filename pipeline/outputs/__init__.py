"""What a run writes for people: the run summary, the report (JSON, HTML, plots), the dataset card."""

from clap_corpus._install import refuse_second_identity

refuse_second_identity(__name__)
