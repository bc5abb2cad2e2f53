"""A small world of sounds, and keyword -> caption pairs drawn from it, to train the embedded demo model.

Each :class:`Event` is one kind of sound with the keywords a label or tag list might use for it and
clause templates that say it in words. A pair picks one to three events (and sometimes a modifier such
as "loud" or "distant"), takes the keywords that the chosen clauses actually use, and joins the clauses
with a connective. Every keyword of a pair appears in its caption (possibly inflected), so a model that
learns the pairs learns to *use* its keywords, not to drop them.

The speech events say "a man" / "a woman" in some captions on purpose: that is what real keyword-to-text
models write, and it gives the debias step (constrained decoding plus the replacement pass) something
real to do in the tests.

Everything is a pure function of the seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

VOWELS = "aeiou"


@dataclass(frozen=True)
class Event:
    """One kind of sound.

    ``clauses`` are templates with ``{a}`` for an optional adjective slot (filled with "" or a modifier
    plus a space) and keep their article in front of ``{a}``: "a {a}dog barks". ``keys`` maps each
    keyword to the indices of the clauses that use it; the first key is the main one.
    """

    name: str
    clauses: tuple[str, ...]
    keys: tuple[tuple[str, tuple[int, ...]], ...]
    adjectives: tuple[str, ...] = ()


def _ev(name: str, clauses: list[str], keys: dict[str, list[int] | None], adjectives: str = "") -> Event:
    all_idx = tuple(range(len(clauses)))
    return Event(
        name,
        tuple(clauses),
        tuple((k, tuple(v) if v is not None else all_idx) for k, v in keys.items()),
        tuple(adjectives.split()),
    )


LOUDNESS = "loud quiet distant soft"
PITCH = "low high steady"

EVENTS: tuple[Event, ...] = (
    # animals
    _ev(
        "dog",
        ["a {a}dog barks", "a {a}dog is barking", "a {a}dog growls", "a {a}dog barks twice"],
        {"dog": None, "bark": [0, 1, 3], "barking": [1], "growl": [2]},
        LOUDNESS + " small large",
    ),
    _ev(
        "cat",
        ["a {a}cat meows", "a {a}cat purrs", "a {a}cat is meowing"],
        {"cat": None, "meow": [0, 2], "purr": [1]},
        LOUDNESS + " small",
    ),
    _ev(
        "bird",
        ["a {a}bird chirps", "{a}birds are singing", "a {a}bird sings", "{a}birds chirp"],
        {"bird": None, "chirp": [0, 3], "birdsong": [], "singing": [1]},
        LOUDNESS,
    ),
    _ev(
        "rooster",
        ["a {a}rooster crows", "a {a}rooster is crowing"],
        {"rooster": None, "crow": None},
        LOUDNESS,
    ),
    _ev("cow", ["a {a}cow moos", "{a}cows are mooing"], {"cow": None, "moo": None}, LOUDNESS),
    _ev(
        "horse",
        ["a {a}horse neighs", "a {a}horse trots by", "{a}hooves clop on the road"],
        {"horse": [0, 1], "neigh": [0], "hooves": [2]},
        LOUDNESS,
    ),
    _ev("sheep", ["a {a}sheep bleats", "{a}sheep are bleating"], {"sheep": None, "bleat": None}, LOUDNESS),
    _ev("frog", ["a {a}frog croaks", "{a}frogs are croaking"], {"frog": None, "croak": None}, LOUDNESS),
    _ev(
        "insects",
        ["{a}insects buzz", "a {a}bee buzzes", "{a}crickets chirp"],
        {"insect": [0], "buzz": [0, 1], "bee": [1], "cricket": [2]},
        LOUDNESS,
    ),
    _ev("duck", ["a {a}duck quacks", "{a}ducks are quacking"], {"duck": None, "quack": None}, LOUDNESS),
    _ev("owl", ["an {a}owl hoots", "an {a}owl hoots at night"], {"owl": None, "hoot": None}, LOUDNESS),
    # people (speech is gendered on purpose, see the module doc)
    _ev(
        "speech",
        [
            "a {a}man is speaking",
            "a {a}woman is speaking",
            "a {a}person is speaking",
            "a {a}man gives a speech",
            "a {a}woman gives a speech",
            "a {a}person gives a speech",
        ],
        {"speech": [3, 4, 5], "speaking": [0, 1, 2], "male speech": [0, 3], "female speech": [1, 4]},
        LOUDNESS,
    ),
    _ev(
        "talk",
        [
            "people are talking",
            "a {a}man and a woman talk",
            "two people talk quietly",
            "a crowd of people talks",
        ],
        {"conversation": [0, 1, 2], "talking": [0], "crowd": [3], "people": [0, 2, 3]},
    ),
    _ev(
        "laughter",
        ["a {a}child laughs", "people laugh", "a {a}woman laughs", "a {a}man laughs"],
        {"laughter": None, "laugh": None, "child": [0]},
        LOUDNESS,
    ),
    _ev(
        "baby",
        ["a {a}baby cries", "a {a}baby is crying", "a {a}baby babbles"],
        {"baby": None, "cry": [0, 1], "crying": [1], "babble": [2]},
        LOUDNESS,
    ),
    _ev(
        "applause",
        ["an audience applauds", "people clap their hands", "{a}applause fills the room"],
        {"applause": [2], "clapping": [1], "audience": [0]},
        LOUDNESS,
    ),
    _ev(
        "footsteps",
        ["{a}footsteps walk across the floor", "someone walks on gravel", "{a}footsteps echo in a hallway"],
        {"footsteps": [0, 2], "walking": [1], "gravel": [1], "echo": [2]},
        LOUDNESS + " slow fast",
    ),
    _ev("cough", ["someone coughs", "a {a}person coughs twice"], {"cough": None}, LOUDNESS),
    _ev("snore", ["someone snores", "a {a}person is snoring"], {"snoring": None}, LOUDNESS),
    _ev("whistling", ["someone whistles a tune", "a {a}person is whistling"], {"whistling": None}, LOUDNESS),
    _ev(
        "singing",
        ["a {a}choir sings", "a {a}singer sings a song", "someone is singing"],
        {"singing": None, "choir": [0], "singer": [1], "song": [1]},
        LOUDNESS,
    ),
    # vehicles
    _ev(
        "car",
        [
            "a {a}car drives by",
            "a {a}car engine starts",
            "a {a}car passes on the road",
            "a {a}car engine idles",
        ],
        {"car": None, "engine": [1, 3], "road": [2], "idling": [3]},
        LOUDNESS + " fast",
    ),
    _ev(
        "truck",
        ["a {a}truck rumbles past", "a {a}truck engine roars"],
        {"truck": None, "engine": [1]},
        LOUDNESS + " large",
    ),
    _ev(
        "motorcycle",
        ["a {a}motorcycle revs", "a {a}motorcycle speeds away"],
        {"motorcycle": None, "rev": [0]},
        LOUDNESS + " fast",
    ),
    _ev("horn", ["a {a}car horn honks", "a {a}horn honks twice"], {"horn": None, "honk": None}, LOUDNESS),
    _ev(
        "siren",
        ["a {a}siren wails", "an {a}ambulance siren passes", "a {a}police siren wails"],
        {"siren": None, "ambulance": [1], "police": [2], "wail": [0, 2]},
        LOUDNESS,
    ),
    _ev(
        "train",
        ["a {a}train passes", "a {a}train horn blows", "a {a}train rattles over the tracks"],
        {"train": None, "horn": [1], "tracks": [2], "railway": []},
        LOUDNESS + " fast",
    ),
    _ev(
        "aircraft",
        ["an {a}airplane flies overhead", "a {a}jet engine roars", "a {a}helicopter hovers"],
        {"airplane": [0], "aircraft": [], "jet": [1], "helicopter": [2]},
        LOUDNESS,
    ),
    _ev(
        "bicycle",
        ["a {a}bicycle bell rings", "a {a}bicycle rolls by"],
        {"bicycle": None, "bell": [0]},
        LOUDNESS,
    ),
    _ev(
        "boat",
        ["a {a}boat motor hums", "a {a}ship horn sounds"],
        {"boat": [0], "ship": [1], "horn": [1]},
        LOUDNESS,
    ),
    _ev(
        "traffic",
        ["{a}traffic flows on a busy street", "cars pass on a busy road"],
        {"traffic": [0], "street": [0], "road": [1]},
        LOUDNESS + " heavy",
    ),
    # weather and nature
    _ev(
        "rain",
        ["{a}rain falls", "{a}rain patters on a roof", "{a}rain is falling"],
        {"rain": None, "roof": [1], "patter": [1]},
        "light heavy steady",
    ),
    _ev(
        "thunder",
        ["{a}thunder rumbles", "{a}thunder cracks", "a {a}thunderstorm rumbles"],
        {"thunder": [0, 1], "thunderstorm": [2], "storm": [2]},
        LOUDNESS,
    ),
    _ev(
        "wind",
        ["the {a}wind blows", "the {a}wind howls", "{a}wind rustles the leaves"],
        {"wind": None, "howl": [1], "leaves": [2], "rustle": [2]},
        "strong light steady",
    ),
    _ev(
        "water",
        ["{a}water flows", "a {a}stream trickles", "{a}water drips", "{a}water splashes"],
        {"water": [0, 2, 3], "stream": [1], "drip": [2], "splash": [3], "trickle": [1]},
        LOUDNESS,
    ),
    _ev(
        "waves",
        ["{a}waves crash on the shore", "the {a}ocean roars"],
        {"waves": [0], "ocean": [1], "sea": [], "shore": [0]},
        LOUDNESS,
    ),
    _ev(
        "fire",
        ["a {a}fire crackles", "{a}flames crackle"],
        {"fire": [0], "crackle": None, "flames": [1]},
        LOUDNESS,
    ),
    # music
    _ev(
        "guitar",
        ["a {a}guitar plays", "someone strums a {a}guitar", "a {a}guitar plays a melody"],
        {"guitar": None, "strum": [1], "melody": [2], "music": []},
        LOUDNESS + " acoustic electric",
    ),
    _ev(
        "piano",
        ["a {a}piano plays", "someone plays a {a}piano", "a {a}piano plays a melody"],
        {"piano": None, "melody": [2], "music": []},
        LOUDNESS + " soft",
    ),
    _ev(
        "drums",
        ["{a}drums play a beat", "a {a}drummer plays", "{a}drums play a fast rhythm"],
        {"drums": [0, 2], "drummer": [1], "beat": [0], "rhythm": [2]},
        LOUDNESS,
    ),
    _ev(
        "violin",
        ["a {a}violin plays", "a {a}violin plays a melody"],
        {"violin": None, "melody": [1]},
        LOUDNESS,
    ),
    _ev("flute", ["a {a}flute plays", "a {a}flute plays a melody"], {"flute": None, "melody": [1]}, LOUDNESS),
    _ev("trumpet", ["a {a}trumpet plays", "a {a}trumpet blares"], {"trumpet": None}, LOUDNESS),
    _ev(
        "music",
        ["{a}music plays", "{a}music plays in the background", "a {a}band plays music"],
        {"music": None, "band": [2], "background": [1]},
        LOUDNESS + " upbeat",
    ),
    _ev(
        "bell",
        ["a {a}bell rings", "{a}church bells ring", "a {a}bell chimes"],
        {"bell": None, "ring": [0, 1], "church": [1], "chime": [2]},
        LOUDNESS,
    ),
    # household
    _ev(
        "door",
        ["a {a}door slams", "a {a}door creaks open", "someone knocks on a door", "a {a}door closes"],
        {"door": None, "slam": [0], "creak": [1], "knock": [2], "knocking": [2]},
        LOUDNESS + " wooden",
    ),
    _ev(
        "dishes",
        ["{a}dishes clatter", "{a}plates clink in a kitchen"],
        {"dishes": [0], "clatter": [0], "kitchen": [1], "plates": [1]},
        LOUDNESS,
    ),
    _ev(
        "vacuum",
        ["a {a}vacuum cleaner runs", "a {a}vacuum cleaner hums"],
        {"vacuum cleaner": None, "vacuum": None},
        LOUDNESS,
    ),
    _ev(
        "microwave",
        ["a {a}microwave hums", "a {a}microwave beeps"],
        {"microwave": None, "beep": [1]},
        LOUDNESS,
    ),
    _ev(
        "tap",
        ["{a}water runs from a tap", "a {a}faucet drips"],
        {"tap": [0], "faucet": [1], "sink": []},
        LOUDNESS,
    ),
    _ev(
        "clock",
        ["a {a}clock ticks", "a {a}clock is ticking", "an {a}alarm clock rings"],
        {"clock": None, "tick": [0, 1], "ticking": [1], "alarm": [2]},
        LOUDNESS,
    ),
    _ev(
        "phone",
        ["a {a}phone rings", "a {a}telephone rings", "a {a}phone vibrates"],
        {"phone": [0, 2], "telephone": [1], "ringing": [0, 1]},
        LOUDNESS,
    ),
    _ev(
        "typing",
        ["someone types on a keyboard", "{a}keys click on a keyboard"],
        {"typing": [0], "keyboard": None},
        LOUDNESS + " fast",
    ),
    _ev(
        "tools",
        ["a {a}drill whirs", "a {a}hammer bangs", "a {a}saw cuts wood", "a {a}lawn mower runs"],
        {"drill": [0], "hammer": [1], "saw": [2], "wood": [2], "lawn mower": [3]},
        LOUDNESS,
    ),
    _ev("paper", ["{a}paper rustles", "someone crumples paper"], {"paper": None, "rustle": [0]}, LOUDNESS),
    _ev("glass", ["{a}glass shatters", "a {a}glass breaks"], {"glass": None, "shatter": [0]}, LOUDNESS),
    # tones, noise and signals (what the demo corpus is made of)
    _ev(
        "tone",
        ["a {a}tone hums", "a {a}tone plays", "a {a}pure tone sounds", "a {a}sine tone rings"],
        {"tone": None, "sine": [3]},
        PITCH + " loud quiet",
    ),
    _ev(
        "hum",
        ["a {a}hum drones on", "a {a}hum fills the room", "an electric {a}hum buzzes"],
        {"hum": None},
        PITCH + " loud quiet",
    ),
    _ev(
        "whistle",
        ["a {a}whistle blows", "a {a}whistle sounds", "a {a}whistle shrieks"],
        {"whistle": None},
        PITCH + " loud",
    ),
    _ev(
        "white noise",
        ["{a}white noise hisses", "{a}white noise fills the room"],
        {"white noise": None, "hiss": [0], "noise": None},
        "bright loud quiet steady",
    ),
    _ev(
        "noise",
        ["{a}noise hisses", "{a}noise rumbles", "{a}static noise crackles", "{a}noise roars"],
        {"noise": None, "hiss": [0], "rumble": [1], "static": [2]},
        "bright dark loud quiet steady",
    ),
    _ev(
        "rumble",
        ["a {a}rumble rolls", "a {a}rumble fills the room", "a {a}deep rumble rolls"],
        {"rumble": None},
        "dark low loud quiet",
    ),
    _ev(
        "sweep",
        ["a {a}tone sweeps", "a {a}sweep glides", "a {a}tone sweeps in pitch"],
        {"sweep": None, "tone": [0, 2], "pitch": [2]},
        "rising falling fast slow",
    ),
    _ev("chirp", ["a {a}chirp sweeps", "a {a}chirp rises"], {"chirp": None}, "rising falling fast short"),
    _ev(
        "clicks",
        ["{a}clicks repeat", "{a}clicks play in a rhythm", "{a}clicks tick"],
        {"clicks": None, "rhythm": [1], "click": None},
        "slow fast steady",
    ),
    _ev(
        "tick",
        ["a {a}tick repeats", "{a}ticks repeat in a rhythm"],
        {"tick": None, "rhythm": [1]},
        "slow fast steady",
    ),
    _ev(
        "beeps",
        ["{a}beeps repeat", "{a}beeps play in a rhythm", "an electronic {a}beep sounds", "a device {a}beeps"],
        {"beeps": [0, 1], "beep": [2, 3], "rhythm": [1], "electronic": [2]},
        "slow fast high short",
    ),
)

# The adverb-like tails a single clause may get.
TAILS = ("", "", "", " in the distance", " nearby", " repeatedly", " outside", " in a large room")
CONNECTIVES_2 = ("{0} while {1}", "{0} and {1}", "{0} as {1} in the background", "{0}, then {1}")
CONNECTIVES_3 = ("{0}, {1} and {2}", "{0} while {1} and {2}", "{0} and {1} as {2}")


@dataclass(frozen=True)
class Pair:
    keywords: tuple[str, ...]  # in a random order, as label/tag lists come
    caption: str


def _article(clause: str) -> str:
    """'a owl' -> 'an owl', 'an loud owl' -> 'a loud owl' after the adjective slot was filled."""
    words = clause.split(" ")
    for i in range(len(words) - 1):
        if words[i] in ("a", "an") and words[i + 1]:
            words[i] = "an" if words[i + 1][0] in VOWELS else "a"
    return " ".join(words)


def _clause(event: Event, rng: random.Random, want_modifier: bool) -> tuple[str, list[str]]:
    key, idx = rng.choice([k for k in event.keys if k[1]])
    clause_i = rng.choice(idx)
    clause = event.clauses[clause_i]
    used = [k for k, ids in event.keys if clause_i in ids]
    # Not every keyword a clause uses is named every time (tag lists are incomplete), but the chosen
    # one always is, and the main one most of the time.
    chosen = [key] + [k for k in used if k != key and rng.random() < 0.5]
    adj = ""
    if want_modifier and event.adjectives and "{a}" in clause:
        adj = rng.choice(event.adjectives)
        chosen.append(adj)
    text = _article(clause.replace("{a}", f"{adj} " if adj else ""))
    return text, chosen


def make_pair(rng: random.Random) -> Pair:
    n = rng.choices((1, 2, 3), weights=(5, 4, 2))[0]
    events = rng.sample(EVENTS, n)
    clauses, keywords = [], []
    for ev in events:
        text, kws = _clause(ev, rng, want_modifier=rng.random() < 0.45)
        clauses.append(text)
        keywords.extend(k for k in kws if k not in keywords)
    if n == 1:
        body = clauses[0] + rng.choice(TAILS)
    elif n == 2:
        body = rng.choice(CONNECTIVES_2).format(*clauses)
    else:
        body = rng.choice(CONNECTIVES_3).format(*clauses)
    rng.shuffle(keywords)
    return Pair(tuple(keywords), body[0].upper() + body[1:] + ".")


def pairs(n: int, seed: int) -> Iterator[Pair]:
    rng = random.Random(seed)
    for _ in range(n):
        yield make_pair(rng)
