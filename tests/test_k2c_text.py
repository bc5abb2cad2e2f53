"""K2C text steps without a model: keyword normalization, debias table, post-processing, fallbacks,
attaching captions to records and the short-clip rule, and the spec's options.k2c validation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml
from helpers.records import captioned, make_record

from clap_corpus.k2c.apply import attach, plan
from clap_corpus.k2c.config import K2CConfig
from clap_corpus.k2c.debias import GENDERED_WORDS, contains_gendered, debias
from clap_corpus.k2c.keywords import keyword_set, normalize_keyword
from clap_corpus.k2c.postprocess import clean, finish, is_copy_of_keywords
from clap_corpus.k2c.presets import PRESETS, TINY_MODEL_DIR
from clap_corpus.pipeline.spec.corpus import SpecError, parse_spec
from clap_corpus.transforms.captions import (
    for_duration,
    ships_k2c,
    template_texts,
    text_augment_all,
)

# (generated caption, after the debias pass)
DEBIAS_TABLE = [
    ("A man walks.", "A person walks."),
    ("a woman speaks", "a person speaks"),
    ("His dog barks.", "Their dog barks."),
    ("A woman and her dog walk in the park.", "A person and their dog walk in the park."),
    ("The manhole cover rattles in Manhattan.", "The manhole cover rattles in Manhattan."),
    ("A human voice hums.", "A human voice hums."),
    ("This shepherd whistles; the hiss of the herd.", "This shepherd whistles; the hiss of the herd."),
    ("The woman's voice echoes.", "The person's voice echoes."),
    ("The woman’s voice echoes.", "The person’s voice echoes."),
    ("The girls' voices.", "The children's voices."),
    ("The women's choir sings.", "The people's choir sings."),
    ("HE SPEAKS LOUDLY.", "THEY SPEAK LOUDLY."),
    ("WOMAN", "PERSON"),
    ("She slowly opens the door.", "They slowly open the door."),
    ("He is talking, she laughs.", "They are talking, they laugh."),
    ("He watches as she flies.", "They watch as they fly."),
    ("She hisses and he goes.", "They hiss and they go."),
    ("He doesn't stop; she isn't there.", "They don't stop; they aren't there."),
    ("He said nothing.", "They said nothing."),
    ("She's singing.", "They're singing."),
    ("Someone calls her.", "Someone calls them."),
    ("He talks to her softly.", "They talk to them softly."),
    ("Her voice rises.", "Their voice rises."),
    ("The dog is his.", "The dog is theirs."),
    ("The hat is hers!", "The hat is theirs!"),
    ("He hurts himself.", "They hurt themselves."),
    ("A female singer performs.", "A singer performs."),
    ("A female announcer speaks.", "An announcer speaks."),
    ("A male speaks.", "A person speaks."),
    ("Female vocalist, piano.", "Vocalist, piano."),
    ("A man and a woman talk.", "Two people talk."),
    ("A boy and a girl play.", "Two children play."),
    ("A man and a girl sing.", "An adult and a child sing."),
    ("Men and women cheer.", "People cheer."),
    ("A fireman shouts.", "A firefighter shouts."),
    ("An actress laughs.", "An actor laughs."),
    ("A policeman, a man.", "A police officer, a person."),
    (
        "Mankind, many humans, Germany, heroes and therapy.",
        "Mankind, many humans, Germany, heroes and therapy.",
    ),
    ("Мужчина говорит.", "Мужчина говорит."),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), DEBIAS_TABLE)
def test_debias_table(text, expected):
    assert debias(text) == expected
    assert not contains_gendered(debias(text))


def test_debias_list_is_written_and_caught():
    for word in ("man", "woman", "men", "women", "boy", "girl", "lady", "gentleman", "he", "she", "him"):
        assert word in GENDERED_WORDS
    for word in ("her", "his", "hers"):
        assert word in GENDERED_WORDS
    # Every listed word, in every case, is gone after the pass.
    for word in GENDERED_WORDS:
        for variant in (word, word.capitalize(), word.upper()):
            out = debias(f"Then {variant} appears.")
            assert not contains_gendered(out), (variant, out)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Dog", ("dog", None)),
        ("Vehicle horn, car horn, honking", ("vehicle horn", None)),
        ("TV", ("TV", None)),
        ("rain|thunder", ("rain thunder", None)),
        ("a.m. radio", ("a m radio", None)),
        ("file.wav", ("file wav", None)),
        ("2.5 kHz tone", ("2.5 kHz tone", None)),
        ("</s>", ("s", None)),
        ("field_recording", ("field recording", None)),
        ("  café   ", ("café", None)),
        ("犬", (None, "non_latin")),
        ("Кошка", (None, "non_latin")),
        ("...", (None, "empty")),
        ("|||", (None, "empty")),
    ],
)
def test_normalize_keyword(raw, expected):
    assert normalize_keyword(raw) == expected


def test_keyword_set_is_a_set_dedups_truncates_and_reports():
    a = keyword_set(["Dog", "Rain"], ["dog", "thunder", "rain"])
    b = keyword_set([], ["Thunder", "rain", "Dog"])
    assert a.keywords == ("dog", "rain", "thunder") and a.key == b.key == "dog|rain|thunder"
    assert keyword_set([], ["dog", "DOG"]).key == keyword_set([], ["DOG", "dog"]).key == "DOG"
    many = keyword_set([], [f"tag{i}" for i in range(5000)], max_keywords=10)
    assert many.truncated and len(many.keywords) == 10 and many.keywords[0] == "tag0"
    assert "tag9" in many.keywords and "tag10" not in many.keywords  # cut in source order, then sorted
    assert keyword_set([], []).problem == "no_keywords"
    assert keyword_set(["犬"], ["猫"]).problem == "non_latin"
    mixed = keyword_set(["犬"], ["dog"])
    assert mixed.keywords == ("dog",) and mixed.dropped_non_latin == 1 and mixed.problem is None
    assert keyword_set([], ["x" * 500], max_keyword_chars=20).keywords == ("x" * 20,)
    assert keyword_set([], ["heavy rain on a tin roof"], max_keyword_chars=12).keywords == ("heavy rain",)


def test_presets_format():
    assert PRESETS["k2t"].format(["dog", "rain"]) == "dog| rain </s>"
    assert PRESETS["common_gen"].format(["dog", "rain"]) == "dog rain"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  a dog   barks ", "A dog barks."),
        ("a dog barks...", "A dog barks."),
        ("A dog barks!?", "A dog barks."),
        ("- a dog barks |", "A dog barks."),
        ("A dog barks.", "A dog barks."),
        ("", ""),
    ],
)
def test_clean(raw, expected):
    assert clean(raw) == expected


def test_fallbacks_with_reasons():
    kws = ("dog", "rain")
    assert finish("a dog barks in the rain", kws, max_chars=200).caption == "A dog barks in the rain."
    assert finish(None, kws, max_chars=200).reason == "generation_error"
    assert finish("", kws, max_chars=200).reason == "empty"
    assert finish(" . , ", kws, max_chars=200).reason == "empty"
    assert finish("Dog, rain.", kws, max_chars=200).reason == "copy_of_keywords"
    assert finish("rain and dog", kws, max_chars=200).reason == "copy_of_keywords"
    assert finish("a dog barks " * 30, kws, max_chars=200).reason == "too_long"
    assert finish("A man walks his dog.", kws, max_chars=200).caption == "A person walks their dog."
    assert (
        finish("A man walks his dog.", kws, max_chars=200, use_debias=False).caption == "A man walks his dog."
    )
    assert is_copy_of_keywords("Vehicle horn and dog.", ["vehicle horn", "dog"])
    assert not is_copy_of_keywords("A dog and a vehicle horn.", ["vehicle horn", "dog"])


def _cfg(**kw) -> K2CConfig:
    base = K2CConfig(model="tiny", model_path=TINY_MODEL_DIR, is_local=True, preset="k2t")
    return replace(base, **kw)


def test_plan_picks_template_records_only():
    cfg = _cfg(sources=(("quiet", "off"),))
    assert (
        plan(captioned(make_record("s_x_0", captions=("A dog barks.",), keywords=("dog",))), cfg).outcome
        == "not_template"
    )
    assert (
        plan(replace(captioned(make_record("s_x_0", labels=("Dog",))), source="quiet"), cfg).outcome
        == "mode_off"
    )
    assert plan(captioned(make_record("s_x_0", labels=("犬",))), cfg).outcome == "non_latin"
    p = plan(captioned(make_record("s_x_0", labels=("Dog",), keywords=("rain", "dog"))), cfg)
    assert p.outcome == "todo" and p.group == "dog|rain"
    assert plan(captioned(make_record("s_x_0", labels=("Dog",))), _cfg(dedup=False)).group == "s_x_0"


def test_attach_modes_json_fields_and_short_clips():
    r = captioned(make_record("s_x_0", labels=("Dog", "Rain")))
    assert r.text == ("The sounds of dog and rain.",) and r.caption_kind == "template"
    rep = attach(r, "A dog barks in the rain.", "replace", 2.0)
    join = attach(r, "A dog barks in the rain.", "join", 2.0)
    assert rep.text == ("A dog barks in the rain.",) and rep.caption_kind == "k2c"
    # join keeps `text` free of the K2C caption (LAION's --text-augment-selection none reads `text`)
    assert (
        join.text == r.text
        and join.caption_kind == "mixed"
        and join.k2c_caption == "A dog barks in the rain."
    )
    for x in (rep, join):
        assert text_augment_all(x) == ["The sounds of dog and rain.", "A dog barks in the rain."]
        assert ships_k2c(x, 2.0) and for_duration(x, 2.0) is x
        short = for_duration(x, 1.999)
        assert short.k2c_caption is None and short.text == r.text and short.caption_kind == "template"
        assert not ships_k2c(short, 1.999) and short.k2c_min_seconds == 2.0
    assert template_texts(rep) == r.text
    assert attach(r, "The sounds of dog and rain.", "join", 2.0) is None  # says what the template says


def _spec(k2c) -> dict:
    return {
        "corpus": "c",
        "options": {"k2c": k2c},
        "sources": [{"name": "audioset", "adapter": "generic", "manifest": __file__, "audio_root": "/"}],
    }


def test_spec_k2c_section_validated():
    spec = parse_spec(_spec({"model": "tiny", "sources": {"audioset": "replace"}}), "/x/spec.yaml")
    cfg = spec.options.k2c
    assert isinstance(cfg, K2CConfig) and cfg.model_path == TINY_MODEL_DIR and cfg.preset == "k2t"
    assert cfg.mode_for("audioset") == "replace" and cfg.mode_for("other") == "join"
    g = cfg.generation
    assert (g.num_beams, g.length_penalty, g.no_repeat_ngram_size, g.early_stopping) == (4, 1.5, 3, True)
    assert cfg.min_clip_seconds == 2.0 and cfg.large_model and not cfg.download
    assert parse_spec(_spec({"model": "tiny", "enabled": False}), "s.yaml").options.k2c is None
    hub = parse_spec(_spec({"model": "gagan3012/k2t-base"}), "s.yaml").options.k2c
    assert hub.preset == "k2t" and not hub.is_local
    local = parse_spec(_spec({"model": "./models/cg", "preset": "common_gen"}), "/x/spec.yaml").options.k2c
    assert local.is_local and local.model_path == "/x/models/cg"


def test_spec_k2c_bare_yaml_off_means_off():
    # YAML 1.1 reads `mode: off` as false; the user meant the mode.
    k2c = yaml.safe_load("model: tiny\nmode: off\nsources: {audioset: off}")
    assert k2c["mode"] is False
    cfg = parse_spec(_spec(k2c), "s.yaml").options.k2c
    assert cfg.mode == "off" and cfg.mode_for("audioset") == "off"


@pytest.mark.parametrize(
    ("k2c", "message"),
    [
        ({}, "options.k2c: missing required field 'model'"),
        (
            {"model": "tiny", "mode": "swap"},
            "options.k2c.mode: must be one of replace, join, off, got 'swap'",
        ),
        ({"model": "tiny", "sources": {"nope": "replace"}}, "options.k2c.sources: no source named 'nope'"),
        ({"model": "tiny", "sources": {"audioset": "x"}}, "options.k2c.sources: mode of 'audioset'"),
        (
            {"model": "tiny", "generation": {"num_beams": 0}},
            "options.k2c.generation.num_beams: must be at least 1",
        ),
        ({"model": "tiny", "generation": {"top_k": 5}}, "options.k2c.generation.top_k: unknown field"),
        (
            {"model": "tiny", "min_clip_seconds": "2"},
            "options.k2c.min_clip_seconds: expected a number, got str ('2')",
        ),
        ({"model": "tiny", "min_batch_size": 8, "max_batch_size": 4}, "options.k2c.max_batch_size"),
        ({"model": "tiny", "device": "tpu"}, "options.k2c.device"),
        ({"model": "tiny", "dedup": "yes"}, "options.k2c.dedup: expected true/false"),
        ({"model": "some/unknown-model"}, "options.k2c.preset: cannot tell the input format"),
        (
            {"model": "tiny", "preset": "gpt"},
            "options.k2c.preset: must be one of auto, k2t, common_gen, got 'gpt'",
        ),
        ({"model": "tiny", "temperature": 0.7}, "options.k2c.temperature: unknown field"),
        ("tiny", "options.k2c: expected a mapping"),
    ],
)
def test_spec_k2c_errors_name_the_field(k2c, message):
    with pytest.raises(SpecError) as e:
        parse_spec(_spec(k2c), "spec.yaml")
    assert str(e.value).startswith("spec.yaml: ") and message in str(e.value)
