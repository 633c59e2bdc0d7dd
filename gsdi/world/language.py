"""The embedded prior's whole language: "[a|an] [colour] category[, view view]".

Prompts such as "a castle", "a red castle", "an orange car", "a blue car, back view". "grey" reads
as "gray" and a full stop, "!" or "?" as nothing. An unknown word is a GsdiError that lists the
vocabulary, never a silent fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gsdi.prompts import VIEW_WORDS, view_prompt
from gsdi.errors import GsdiError
from gsdi.world.objects import CATEGORIES, PALETTE

ARTICLES = ("a", "an")
VOCABULARY = (*ARTICLES, *PALETTE, *CATEGORIES, ",", *VIEW_WORDS, "view")


@dataclass(frozen=True)
class Prompt:
    category: str
    colour: str | None = None
    view: str | None = None


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
        raise GsdiError(f"the embedded prior does not know {', '.join(repr(u) for u in dict.fromkeys(unknown))}; "
                        f"its words are: {' '.join(w for w in VOCABULARY if w != ',')} "
                        f"(prompts like \"a red castle\" or \"a red castle, front view\")")
    view = None
    if "," in tokens:
        i = tokens.index(",")
        tail, tokens = tokens[i + 1 :], tokens[:i]
        if len(tail) != 2 or tail[0] not in VIEW_WORDS or tail[1] != "view":
            raise GsdiError(f"after the comma the embedded prior expects '<{'|'.join(VIEW_WORDS)}> view', got {' '.join(tail)!r}")
        view = tail[0]
    if tokens and tokens[0] in ARTICLES:
        tokens = tokens[1:]
    colour = tokens.pop(0) if tokens and tokens[0] in PALETTE else None
    if len(tokens) != 1 or tokens[0] not in CATEGORIES:
        raise GsdiError(f"the embedded prior expects one object word ({', '.join(CATEGORIES)}) after an optional "
                        f"colour, as in \"a red castle\"; got {text!r}")
    return Prompt(tokens[0], colour, view)


def describe(category: str, colour: str | None = None, view: str | None = None) -> str:
    """The canonical prompt for a world object: 'a red castle', 'an orange car, back view'."""
    noun = f"{colour} {category}" if colour else category
    text = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    return view_prompt(text, view) if view else text
