from manifests.records import Record, Reject
from transforms.captions import label_phrase, render_captions, template_caption


def _record(**kw) -> Record:
    return Record(key="k", source="s", source_id="id", audio_path="/x.wav", row=1, **kw)


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
    r = render_captions(_record(captions=("  A dog   barks ", "A dog barks"), labels=("Dog",)))
    assert r.text == ("A dog barks",) and r.caption_kind == "source"


def test_render_falls_back_to_labels_then_keywords():
    assert render_captions(_record(labels=("Rain",))).text == ("The sound of rain.",)
    r = render_captions(_record(keywords=("wind", "storm")))
    assert r.text == ("The sounds of wind and storm.",) and r.caption_kind == "template"


def test_render_rejects_clip_without_any_text():
    r = render_captions(_record())
    assert isinstance(r, Reject) and r.stage == "captions" and r.code == "no_text"
