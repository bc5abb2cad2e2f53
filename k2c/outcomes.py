"""What the K2C stage did with each record, declared once: the plan, the fallbacks, the counted flags.

The stage never drops a record; a record that gets no K2C caption keeps its template caption, and the
report counts why. The values are the strings ``summary.json``'s K2C report has always used.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    # decided by the plan, before the model
    TODO = "todo"  # eligible: its keyword set goes through the model
    NOT_TEMPLATE = "not_template"  # has a source caption: not K2C's business
    MODE_OFF = "mode_off"  # K2C is off for its source
    # the record got its caption
    GENERATED = "generated"
    # fallbacks (the template caption stays); the input side: no usable keyword
    NO_KEYWORDS = "no_keywords"
    NON_LATIN = "non_latin"
    # fallbacks after the model (k2c.postprocess says when each applies)
    GENERATION_ERROR = "generation_error"
    EMPTY = "empty"
    COPY_OF_KEYWORDS = "copy_of_keywords"
    TOO_LONG = "too_long"
    GENDERED = "gendered"
    SAME_AS_TEMPLATE = "same_as_template"
    # flags: counted beside a record's outcome, not instead of it
    TRUNCATED_KEYWORD_LIST = "truncated_keyword_list"
    DROPPED_NON_LATIN_KEYWORDS = "dropped_non_latin_keywords"


INPUT_FALLBACKS = frozenset({Outcome.NO_KEYWORDS, Outcome.NON_LATIN})
FALLBACKS = INPUT_FALLBACKS | {
    Outcome.GENERATION_ERROR,
    Outcome.EMPTY,
    Outcome.COPY_OF_KEYWORDS,
    Outcome.TOO_LONG,
    Outcome.GENDERED,
    Outcome.SAME_AS_TEMPLATE,
}
