"""The world's whole language: "[a|an] [colour] category [with colour pattern][, view view]".

Prompts such as "a castle", "a red castle", "an orange car", "a blue car, back view", "a blue car
with yellow stripes" (pattern: stripes, dots or checks, always with its colour; without one the
object is plain). "grey" reads
as "gray" and a full stop, "!" or "?" as nothing. An unknown word is a GsdiError that lists the
vocabulary, never a silent fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gsdi.prompts import VIEW_WORDS, view_prompt
from gsdi.errors import GsdiError
from gsdi.world.objects import CATEGORIES, PALETTE
from gsdi.world.shapes import PATTERNS

ARTICLES = ("a", "an")
VOCABULARY = (*ARTICLES, *PALETTE, *CATEGORIES, ",", *VIEW_WORDS, "view", "with", *PATTERNS)
EXAMPLES = '"a red castle", "a blue car with yellow stripes" or "a red castle, front view"'


@dataclass(frozen=True)
class Prompt:
    category: str
    colour: str | None = None
    view: str | None = None
    pattern: str | None = None  # one of PATTERNS, None for a plain object
    pattern_colour: str | None = None


SPELLINGS = {"grey": "gray"}  # other spellings people use, read as the vocabulary's word
IGNORED = (".", "!", "?")  # sentence punctuation, read as nothing ("a red castle." is "a red castle")


def words(text: str) -> list[str]:
    """Lower-case words, with the comma as a word of its own; SPELLINGS read as the vocabulary's word and
    IGNORED punctuation dropped."""
    return [SPELLINGS.get(w, w) for w in re.findall(r"[a-z]+|,|\S", text.lower()) if w not in IGNORED]


def parse(text: str) -> Prompt:
    tokens = words(text)
    unknown = [t for t in tokens if t not in VOCABULARY]
    if unknown:
        raise GsdiError(f"the world's language does not know {', '.join(repr(u) for u in dict.fromkeys(unknown))}; "
                        f"its words are: {' '.join(w for w in VOCABULARY if w != ',')} "
                        f"(prompts like {EXAMPLES})")
    view = None
    if "," in tokens:
        i = tokens.index(",")
        tail, tokens = tokens[i + 1 :], tokens[:i]
        if len(tail) != 2 or tail[0] not in VIEW_WORDS or tail[1] != "view":
            raise GsdiError(f"after the comma the world's language expects '<{'|'.join(VIEW_WORDS)}> view', got {' '.join(tail)!r}")
        view = tail[0]
    pattern = pattern_colour = None
    if "with" in tokens:
        i = tokens.index("with")
        tail, tokens = tokens[i + 1 :], tokens[:i]
        if len(tail) != 2 or tail[0] not in PALETTE or tail[1] not in PATTERNS:
            raise GsdiError(f"after 'with' the world's language expects a colour and a pattern ({', '.join(PATTERNS)}), "
                            f"as in \"a blue car with yellow stripes\"; got {' '.join(tail)!r}")
        pattern_colour, pattern = tail
    if tokens and tokens[0] in ARTICLES:
        tokens = tokens[1:]
    colour = tokens.pop(0) if tokens and tokens[0] in PALETTE else None
    if len(tokens) != 1 or tokens[0] not in CATEGORIES:
        raise GsdiError(f"the world's language expects one object word ({', '.join(CATEGORIES)}) after an optional "
                        f"colour, as in \"a red castle\"; got {text!r}")
    if pattern_colour is not None and pattern_colour == colour:
        raise GsdiError(f"a pattern needs a colour other than the object's ({colour} {tokens[0]} with {colour} {pattern}?)")
    return Prompt(tokens[0], colour, view, pattern, pattern_colour)


def describe(category: str, colour: str | None = None, view: str | None = None, pattern: str | None = None,
             pattern_colour: str | None = None) -> str:
    """The canonical prompt for a world object: 'a red castle', 'an orange car, back view', 'a blue car
    with yellow stripes, front view'."""
    assert (pattern is None) == (pattern_colour is None), (pattern, pattern_colour)
    noun = f"{colour} {category}" if colour else category
    text = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    if pattern:
        text += f" with {pattern_colour} {pattern}"
    return view_prompt(text, view) if view else text
