"""Gender-debiasing of generated captions: a written word list, a replacement pass, and the same list as
``bad_words_ids`` for constrained decoding.

LAION published examples ("woman"/"man" -> "person", "her"/"his" -> "their") but no list; this is ours.
The pass works on whole words (so "manhole", "Manhattan", "human", "shepherd", "this" are untouched)
and keeps a sentence grammatical where a swap alone would not:

- "he/she" + verb: "she walks" -> "they walk", "he is" -> "they are", "he doesn't" -> "they don't"
  (one adverb in between is allowed: "he slowly opens" -> "they slowly open");
- "her" is "their" before a noun ("her dog") and "them" elsewhere ("calls her.", "to her softly");
  "his" is "their" before a word and "theirs" at the end of a clause ("the dog is his.");
- possessives keep their "'s" ("woman's" -> "person's", "women's" -> "people's");
- "male"/"female" before a word that names a voice or a performer is dropped ("a female singer" ->
  "a singer"), else read as a noun ("a male speaks" -> "a person speaks");
- "a man and a woman" (and the like) -> "two people"; "a boy and a girl" -> "two children";
- a/an is re-chosen where the next word changed ("an actress" -> "an actor", "a female announcer" ->
  "an announcer");
- case follows the replaced word ("He" -> "They", "WOMAN" -> "PERSON").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# noun -> replacement; plural forms are listed explicitly (English plurals are irregular here).
NOUNS: dict[str, str] = {
    "man": "person", "woman": "person", "men": "people", "women": "people",
    "boy": "child", "girl": "child", "boys": "children", "girls": "children",
    "lady": "person", "ladies": "people", "gentleman": "person", "gentlemen": "people",
    "guy": "person", "guys": "people", "gal": "person", "gals": "people",
    "lad": "young person", "lads": "young people", "lass": "young person", "lasses": "young people",
    "husband": "partner", "wife": "partner", "husbands": "partners", "wives": "partners",
    "boyfriend": "partner", "girlfriend": "partner", "boyfriends": "partners", "girlfriends": "partners",
    "father": "parent", "mother": "parent", "fathers": "parents", "mothers": "parents",
    "dad": "parent", "mom": "parent", "mum": "parent", "daddy": "parent", "mommy": "parent",
    "mummy": "parent", "dads": "parents", "moms": "parents", "mums": "parents",
    "son": "child", "daughter": "child", "sons": "children", "daughters": "children",
    "brother": "sibling", "sister": "sibling", "brothers": "siblings", "sisters": "siblings",
    "grandfather": "grandparent", "grandmother": "grandparent", "grandpa": "grandparent",
    "grandma": "grandparent", "grandfathers": "grandparents", "grandmothers": "grandparents",
    "uncle": "relative", "aunt": "relative", "uncles": "relatives", "aunts": "relatives",
    "nephew": "relative", "niece": "relative",
    "king": "monarch", "queen": "monarch", "kings": "monarchs", "queens": "monarchs",
    "actress": "actor", "actresses": "actors", "waitress": "server", "waitresses": "servers",
    "policeman": "police officer", "policewoman": "police officer",
    "policemen": "police officers", "policewomen": "police officers",
    "fireman": "firefighter", "firemen": "firefighters",
    "chairman": "chairperson", "chairwoman": "chairperson", "chairmen": "chairpersons",
    "businessman": "businessperson", "businesswoman": "businessperson",
    "businessmen": "businesspeople", "businesswomen": "businesspeople",
    "salesman": "salesperson", "saleswoman": "salesperson", "salesmen": "salespeople",
    "spokesman": "spokesperson", "spokeswoman": "spokesperson",
    "postman": "mail carrier", "mailman": "mail carrier", "cameraman": "camera operator",
    "fisherman": "fisher", "fishermen": "fishers",
    "sportsman": "athlete", "sportswoman": "athlete", "sportsmen": "athletes",
    "males": "people", "females": "people",
}  # fmt: skip

# Words after "male"/"female" that make it an adjective we can simply drop.
_DROPPABLE_AFTER_GENDER_ADJ = frozenset({
    "voice", "voices", "speaker", "speakers", "singer", "singers", "vocalist", "vocalists", "vocal",
    "vocals", "narrator", "narrators", "announcer", "announcers", "speech", "laughter", "laugh", "scream",
    "screams", "choir", "presenter", "host", "child", "children", "teenager", "teenagers", "adult",
    "adults", "person", "people", "student", "students", "whisper", "whispering", "speaking", "talking",
    "singing", "shouting", "yelling",
})  # fmt: skip
ADJECTIVES = ("male", "female")

SUBJECT_PRONOUNS = frozenset({"he", "she"})
PRONOUNS: dict[str, str] = {
    "him": "them", "himself": "themselves", "herself": "themselves", "hers": "theirs",
    "he's": "they're", "she's": "they're", "he'd": "they'd", "she'd": "they'd",
    "he'll": "they'll", "she'll": "they'll",
}  # fmt: skip
# "her" is an object (-> them) when followed by one of these, or by punctuation / the end.
_AFTER_OBJECT_HER = frozenset({
    "a", "an", "the", "and", "or", "but", "to", "with", "in", "on", "at", "as", "while", "then", "again",
    "for", "from", "by", "of", "into", "onto", "up", "down", "out", "off", "over", "away", "back", "that",
    "this", "these", "those", "when", "so", "if", "because",
})  # fmt: skip
_IRREGULAR_VERBS = {
    "is": "are", "was": "were", "has": "have", "does": "do", "goes": "go",
    "isn't": "aren't", "wasn't": "weren't", "hasn't": "haven't", "doesn't": "don't",
}  # fmt: skip
_ADVERBS = frozenset({
    "also", "then", "often", "always", "never", "still", "just", "now", "again", "slowly", "quickly",
    "softly", "loudly",
})  # fmt: skip
_ADULT = frozenset({"man", "woman", "lady", "gentleman", "guy"})
_YOUNG = frozenset({"boy", "girl"})

# Every word the pass replaces (lowercase), also the source of bad_words_ids.
GENDERED_WORDS: tuple[str, ...] = tuple(
    sorted(set(NOUNS) | set(ADJECTIVES) | SUBJECT_PRONOUNS | {"her", "his"} | set(PRONOUNS))
)

_TOKEN = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")
_PAIR = re.compile(
    r"\b(a|the)\s+(man|woman|lady|gentleman|guy|boy|girl)\s+and\s+(a|the)\s+"
    r"(man|woman|lady|gentleman|guy|boy|girl)\b",
    re.IGNORECASE,
)


_PLURAL_PAIR = re.compile(
    r"\b(men|women|ladies|gentlemen|guys|boys|girls)\s+and\s+(men|women|ladies|gentlemen|guys|boys|girls)\b",
    re.IGNORECASE,
)
_PLURAL_ADULT = frozenset({"men", "women", "ladies", "gentlemen", "guys"})


def _match_case(original: str, replacement: str) -> str:
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _verb_for_they(verb: str) -> str:
    low = verb.lower()
    if low in _IRREGULAR_VERBS:
        return _match_case(verb, _IRREGULAR_VERBS[low])
    if len(low) < 3 or not low.endswith("s") or low.endswith(("ss", "us", "'s", "’s")):
        return verb  # not a third-person -s form ("he can", "he said", "he, ...")
    if low.endswith("ies") and len(low) > 4:
        return verb[:-3] + "y"  # flies -> fly (but "dies" -> "die" below)
    if low.endswith(("ches", "shes", "sses", "xes", "zzes", "oes")):
        return verb[:-2]  # watches -> watch, hisses -> hiss, goes -> go
    return verb[:-1]


def _pair_repl(m: re.Match) -> str:
    a, b = m.group(2).lower(), m.group(4).lower()
    if a in _YOUNG and b in _YOUNG:
        text = "two children"
    elif a in _ADULT and b in _ADULT:
        text = "two people"
    else:
        text = "an adult and a child"
    return _match_case(m.group(1), text)


def _plural_pair_repl(m: re.Match) -> str:
    a, b = m.group(1).lower(), m.group(2).lower()
    if a in _PLURAL_ADULT and b in _PLURAL_ADULT:
        text = "people"
    elif a not in _PLURAL_ADULT and b not in _PLURAL_ADULT:
        text = "children"
    else:
        text = "adults and children"
    return _match_case(m.group(1), text)


def _split_possessive(word: str) -> tuple[str, str]:
    """ "woman's" -> ("woman", "'s"); anything else -> (word, "")."""
    if word.lower().endswith(("'s", "’s")):
        return word[:-2], word[-2:]
    return word, ""


def debias(text: str) -> str:
    """The caption with gendered words replaced (see the module doc); other text is kept as it is."""
    text = _PLURAL_PAIR.sub(_plural_pair_repl, _PAIR.sub(_pair_repl, text))
    parts = _TOKEN.split(text)  # separators, at even indices
    words = _TOKEN.findall(text)  # words, between them
    out = list(words)
    changed = [False] * len(words)

    def next_word(i: int) -> tuple[int | None, str]:
        """Index of the next word if only spaces separate it from word i."""
        if i + 1 < len(words) and parts[i + 1].strip() == "":
            return i + 1, words[i + 1]
        return None, ""

    i = 0
    while i < len(words):
        w = words[i]
        low = w.lower()
        base, poss = _split_possessive(w)
        if low in SUBJECT_PRONOUNS:
            out[i], changed[i] = _match_case(w, "they"), True
            j, nxt = next_word(i)
            if j is not None and (nxt.lower() in _ADVERBS or nxt.lower().endswith("ly")):
                j, nxt = next_word(j)
            if j is not None:
                out[j] = _verb_for_they(nxt)
                changed[j] = out[j] != nxt
        elif low in PRONOUNS:
            out[i], changed[i] = _match_case(w, PRONOUNS[low]), True
        elif low == "her":
            j, nxt = next_word(i)
            is_object = j is None or nxt.lower() in _AFTER_OBJECT_HER or nxt.lower().endswith("ly")
            out[i], changed[i] = _match_case(w, "them" if is_object else "their"), True
        elif low == "his":
            j, _ = next_word(i)
            out[i], changed[i] = _match_case(w, "theirs" if j is None else "their"), True
        elif low in ADJECTIVES:
            j, nxt = next_word(i)
            if j is not None and nxt.lower() in _DROPPABLE_AFTER_GENDER_ADJ:
                out[i], changed[i] = "", True
                changed[j] = True  # its article may have to change: "a female announcer"
            else:
                out[i], changed[i] = _match_case(w, "person"), True
        elif base.lower() in NOUNS:
            new = NOUNS[base.lower()]
            after = parts[i + 1]
            if not poss and after[:1] in ("'", "’") and low.endswith("s") and not new.endswith("s"):
                parts[i + 1] = after[0] + "s" + after[1:]  # "girls' voices" -> "children's voices"
            out[i], changed[i] = _match_case(base, new) + poss, True
        i += 1
    return _rejoin(parts, out, changed)


def _rejoin(parts: list[str], words: list[str], changed: list[bool]) -> str:
    # Fix a/an in front of changed words, then drop the emptied words with one of their spaces.
    for i in range(len(words)):
        if not changed[i] or not words[i]:
            continue
        # find the previous non-empty word, if only spaces separate it
        k = i - 1
        while k >= 0 and not words[k] and parts[k + 1].strip() == "":
            k -= 1
        if (
            k >= 0
            and words[k].lower() in ("a", "an")
            and all(parts[m].strip() == "" for m in range(k + 1, i + 1))
        ):
            article = "an" if words[i][0].lower() in "aeiou" else "a"
            words[k] = _match_case(words[k], article)
    pieces = [parts[0]]
    for i, w in enumerate(words):
        if w:
            pieces.append(w)
            pieces.append(parts[i + 1])
        else:
            # drop the word and the whitespace after it
            sep = parts[i + 1]
            pieces.append(sep[1:] if sep.startswith(" ") else sep)
    out = "".join(pieces)
    if words and not words[0] and out[:1].islower():
        out = out[0].upper() + out[1:]
    return out


def contains_gendered(text: str) -> bool:
    """True when a word of ``text`` is on the list (after the pass this must be False)."""
    for w in _TOKEN.findall(text):
        base, _ = _split_possessive(w)
        if w.lower() in GENDERED_WORDS or base.lower() in GENDERED_WORDS:
            return True
    return False


def bad_words_ids(tokenizer, words: Iterable[str] = GENDERED_WORDS) -> list[list[int]]:
    """Token id sequences of every listed word (lowercase, Capitalized, UPPER) for ``generate``.

    Only the word-initial spelling (SentencePiece's "▁word") is forbidden: that is how a word starts
    after a space or at the start of the caption. A sequence with the unknown token is left out (it
    would forbid every out-of-vocabulary word instead).
    """
    unk = tokenizer.unk_token_id
    special = set(tokenizer.all_special_ids)
    seqs: set[tuple[int, ...]] = set()
    for w in words:
        for variant in {w, w.capitalize(), w.upper()}:
            ids = tokenizer(variant, add_special_tokens=False)["input_ids"]
            ids = [i for i in ids if i not in special or i == unk]
            if ids and unk not in ids:
                seqs.add(tuple(ids))
    return [list(s) for s in sorted(seqs)]
