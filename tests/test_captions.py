import json
import unicodedata

from helpers.records import make_record
from hypothesis import given
from hypothesis import strategies as st

from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.records import Reject
from clap_corpus.k2c.keywords import keyword_set
from clap_corpus.k2c.postprocess import clean, finish
from clap_corpus.transforms.captions import (
    KEPT_FORMAT,
    is_technical_tag,
    keyword_caption,
    label_phrase,
    normalize_text,
    render_captions,
    template_caption,
)


def test_template_one_label():
    assert template_caption(["Dog"]) == "The sound of dog."


def test_template_several_labels_no_oxford_comma():
    assert template_caption(["Dog", "Speech", "Rain"]) == "The sounds of dog, speech and rain."
    assert template_caption(["Dog", "Rain"]) == "The sounds of dog and rain."


def test_template_uses_label_up_to_first_comma_and_keeps_acronyms():
    assert template_caption(["Vehicle horn, car horn, honking", "TV"]) == "The sounds of vehicle horn and TV."
    assert label_phrase("Beep, bleep") == "beep"
    assert label_phrase("iPhone ringtone") == "iPhone ringtone"


def test_template_dedupes_after_normalising():
    assert template_caption(["Dog", "dog", "Dog, puppy"]) == "The sound of dog."


def test_template_rejects_empty():
    for labels in ([], [""], [" , "]):
        try:
            template_caption(labels)
        except ValueError:
            continue
        raise AssertionError(labels)


def test_render_prefers_source_captions_and_cleans_them():
    r = render_captions(make_record(captions=("  A dog   barks ", "A dog barks"), labels=("Dog",)))
    assert r.text == ("A dog barks",) and r.caption_kind == "source"


def test_render_falls_back_to_labels_then_keywords():
    assert render_captions(make_record(labels=("Rain",))).text == ("The sound of rain.",)
    r = render_captions(make_record(keywords=("wind", "storm")))
    assert r.text == ("A sound tagged wind and storm.",) and r.caption_kind == "template"


def test_render_rejects_clip_without_any_text():
    r = render_captions(make_record())
    assert isinstance(r, Reject) and r.stage == "captions" and r.code == "no_text"


# ------------------------------------------------------------------------------------------------
# Hostile caption text


def _forbidden(ch: str) -> bool:
    """What no shipped text may hold: controls, surrogates, format characters (bidi controls and
    marks, zero-width and tag characters ...) other than ZWJ/ZWNJ and the visible concatenation marks."""
    cat = unicodedata.category(ch)
    return cat in ("Cc", "Cs", "Zl", "Zp") or (cat == "Cf" and ch not in KEPT_FORMAT)


HOSTILE = (
    "A dog\x00 barks\x1b[31m loudly\x1b[0m\x07 \x1b]0;pwned\x07in the \u202erain\u202c\u2066 \u2069"
    "\u200bat\ufeff night\x85\x9b2J \u00ad\U000e0041\U000e0042 \ud800 cafe\u0301\u200e\u061c"
)


def test_normalize_removes_controls_escapes_bidi_and_invisible_characters():
    assert normalize_text(HOSTILE) == "A dog barks loudly in the rain at night café"
    assert normalize_text(" \t\r\n a\u2028b\x0bc ") == "a b c"
    assert normalize_text("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645") == "می\u200cخواهم"  # ZWNJ stays
    assert normalize_text("\U0001f468\u200d\U0001f469") == "\U0001f468\u200d\U0001f469"  # emoji ZWJ sequence
    assert normalize_text("\x00\u202e\x1b[1m  \u200b") == ""


_HOSTILE_CHARS = st.one_of(
    st.characters(exclude_categories=()),  # surrogates included
    st.characters(categories=("Cc", "Cf", "Cs", "Zl", "Zp", "Mn")),
    st.sampled_from(list("\x00\x1b[]\x07\x9b\x85\u202e\u2066\u200b\u200d\ufeff\U000e0041e\u0301 \n")),
)


@given(st.text(alphabet=_HOSTILE_CHARS, max_size=60))
def test_normalize_leaves_nothing_forbidden_and_is_idempotent(text):
    out = normalize_text(text)
    assert not any(_forbidden(ch) for ch in out), ascii(out)
    assert out == out.strip() and "  " not in out
    assert normalize_text(out) == out and unicodedata.is_normalized("NFC", out)
    dumps_json({"text": out})  # writable as UTF-8 (no lone surrogate)


def test_render_normalises_every_text_field_and_drops_what_is_left_empty():
    r = render_captions(
        make_record(
            source_id="id",
            captions=(HOSTILE, "\x00\u202e ", "A dog barks loudly in the rain at night cafe\u0301"),
            labels=("Dog\x1b[2J", "\u200b"),
            keywords=("rain\u202e",),
            license="CC-BY\x00-4.0",
            attribution="by \u202emallory\u202c",
            original={"desc\x00": ["line one\nline two\x1b[31m", 3], "n": 1.5},
            origin_ids=("freesound:1\t2\u2066",),
        )
    )
    assert r.text == ("A dog barks loudly in the rain at night café",) and r.caption_kind == "source"
    assert r.labels == ("Dog",) and r.keywords == ("rain",) and r.tags == ("Dog", "rain")
    assert r.license == "CC-BY-4.0" and r.attribution == "by mallory"
    assert r.source_id == "id" and r.origin_ids == ("freesound:1 2",) and r.key == "k"
    assert r.original == {"desc": ["line one line two", 3], "n": 1.5}
    assert render_captions(r, 1000) == r  # the stage's output passes it unchanged
    # only empty captions left: the labels' template; nothing at all left: no_text
    assert render_captions(make_record(captions=("\x1b[0m",), labels=("Rain",))).text == (
        "The sound of rain.",
    )
    gone = render_captions(make_record(captions=("\u202e\u202c",), labels=("\x00",), keywords=("\u200b",)))
    assert isinstance(gone, Reject) and gone.code == "no_text"


def test_a_caption_over_the_cap_rejects_its_clip():
    assert render_captions(make_record(captions=("x" * 1000,)), 1000).text == ("x" * 1000,)
    # counted after normalisation: controls and runs of spaces do not count
    assert render_captions(make_record(captions=("x" * 1000 + "\x00\u202e   ",)), 1000).text == ("x" * 1000,)
    for captions in (("x" * 200_000,), ("A dog barks.", "y" * 1001)):
        r = render_captions(make_record(captions=captions), 1000)
        assert isinstance(r, Reject) and (r.stage, r.code) == ("captions", "caption_too_long"), captions
        assert "1000" in r.reason and "options.max_caption_chars" in r.reason
    r = render_captions(make_record(labels=("z" * 600, "w" * 600)), 1000)  # a template over the cap too
    assert isinstance(r, Reject) and r.code == "caption_too_long"
    assert render_captions(make_record(captions=("x" * 5000,))).text == ("x" * 5000,)  # None: no cap


# ------------------------------------------------------------------------------------------------
# Keyword-only clips

FREESOUND_TAGS = (
    "field-recording",
    "bird",
    "ambience",
    "stereo",
    "zoom-h4n",
    "44.1khz",
    "loop",
    "bright",
    "WAV",
    "24bit",
)


def test_keyword_only_clips_get_a_caption_that_reads_as_english():
    r = render_captions(make_record(keywords=FREESOUND_TAGS))
    assert r.text == ("A sound tagged field-recording, bird, ambience, loop and bright.",)
    assert r.keywords == FREESOUND_TAGS and r.tags == FREESOUND_TAGS  # technical tags stay in `tag`
    assert keyword_caption(["noise", "hiss", "bright"]) == "A sound tagged noise, hiss and bright."
    assert keyword_caption(["barking"]) == "A sound tagged barking."
    # labels win over keywords, and keep their own template
    r = render_captions(make_record(labels=("Bird",), keywords=FREESOUND_TAGS))
    assert r.text == ("The sound of bird.",)
    # a clip whose tags only describe the recording has nothing to say about the sound
    r = render_captions(make_record(keywords=("stereo", "wav", "44.1khz", "zoom-h4n")))
    assert isinstance(r, Reject) and r.code == "no_text" and "technical" in r.reason
    # thousands of tags: the template names the first ten, well under the cap
    r = render_captions(make_record(keywords=tuple(f"tag{i}" for i in range(3000))), 1000)
    assert r.text == ("A sound tagged " + ", ".join(f"tag{i}" for i in range(9)) + " and tag9.",)


def test_technical_tags():
    technical = [
        "44.1khz",
        "48kHz",
        "96k",
        "44100",
        "48000hz",
        "22050-hz",
        "16bit",
        "24-bit",
        "32-bit-float",
        "wav",
        "mp3",
        "FLAC",
        "aiff",
        "stereo",
        "Mono",
        "binaural",
        "zoom-h4n",
        "zoom_h6",
        "zoomh4n",
        "tascam-dr40",
        "sony-pcm-d50",
        "rode-nt4",
        "h4n",
        "H2n",
        "dr-05",
        "pcm-m10",
        "24bit-96khz",
        "16-bit/44.1khz",
    ]
    for tag in technical:
        assert is_technical_tag(tag), tag
    for tag in ("zoom", "440hz", "loop", "bird", "field-recording", "wave", "sony", "1khz-tone", "120bpm"):
        assert not is_technical_tag(tag), tag
    # K2C gets the same keywords the template caption names
    assert keyword_set((), FREESOUND_TAGS).keywords == (
        "ambience",
        "bird",
        "bright",
        "field-recording",
        "loop",
    )


def test_k2c_output_is_normalised_like_every_caption():
    assert clean("\x1b[31ma dog\u202e barks\x00 in\u200b the rain") == "A dog barks in the rain."
    assert finish("\u202e\x00\x1b[0m", ["dog"], max_chars=200).reason == "empty"
    out = finish("a dog\x85 barks\u2066 at the mailman\x9b0m", ["dog"], max_chars=200, use_debias=False)
    assert out.caption == "A dog barks at the mailman." and not any(_forbidden(c) for c in out.caption)
    assert json.loads(dumps_json({"t": out.caption}))["t"] == out.caption
