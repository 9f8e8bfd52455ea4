"""SynthWorld's vocabulary: categories, their values, and the words that describe them.

Every value is one lowercase-or-capitalised word, so that a cloze answer is one word of text.
The visual appearance of each value lives in :mod:`.render`; this module holds only language.

Categories mirror the UniKE study's nine: five attributes the renderer draws on the subject itself
(color, shape, size, pattern, material) and four relations drawn around it (location as the
background scene, affiliation as an emblem in the top-left corner, occupation as a tool in the
top-right corner, creator as a maker's mark in the bottom-right corner).
"""

from __future__ import annotations

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "color": ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink"),
    "shape": ("circle", "square", "triangle", "diamond", "cross"),
    "size": ("small", "medium", "large"),
    "pattern": ("plain", "striped", "dotted", "checkered"),
    "material": ("matte", "metallic", "wooden", "glowing"),
}

RELATION_VALUES: dict[str, tuple[str, ...]] = {
    "location": ("meadow", "desert", "ocean", "city", "cave"),
    "affiliation": ("Sunhall", "Tidehold", "Leafguard", "Emberkin", "Frostmark"),
    "occupation": ("smith", "painter", "sailor", "farmer", "scribe"),
    "creator": ("Ottavi", "Brenn", "Kasimir", "Delphine", "Yusra"),
}

ATTRIBUTES: tuple[str, ...] = tuple(ATTRIBUTE_VALUES)
RELATIONS: tuple[str, ...] = tuple(RELATION_VALUES)
CATEGORY_VALUES: dict[str, tuple[str, ...]] = {**ATTRIBUTE_VALUES, **RELATION_VALUES}
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_VALUES)


def source_of(category: str) -> str:
    """``"attribute"`` or ``"relation"``."""
    if category in ATTRIBUTE_VALUES:
        return "attribute"
    if category in RELATION_VALUES:
        return "relation"
    raise KeyError(f"unknown SynthWorld category {category!r}; known: {', '.join(CATEGORIES)}")


# --- image layouts: the four stages of an attribute record ------------------------------------
# Stage 1 draws the subject alone; later stages refer to it ever more indirectly: two of it, it
# beside another thing, a thing derived from it (a flag bearing its picture).
LAYOUTS: tuple[str, ...] = ("single", "pair", "among", "flag")
STAGE_LAYOUT: dict[str, str] = {
    "stage_1": "single",
    "stage_2": "pair",
    "stage_3": "among",
    "stage_4": "flag",
}


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def a(word: str) -> str:
    """``"a zib"`` / ``"an ouvar"``."""
    return f"{article(word)} {word}"


def plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x", "z", "sh", "ch")) else "s")


def layout_phrase(layout: str, thing: str) -> str:
    """How an image prompt places ``thing`` (a subject name or a described shape) in a layout."""
    if layout == "single":
        return a(thing)
    if layout == "pair":
        return f"two {plural(thing)} side by side"
    if layout == "among":
        return f"{a(thing)} beside a grey pebble"
    if layout == "flag":
        return f"a flag showing {a(thing)}"
    raise KeyError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")


def layout_noun_phrase(layout: str, s: str) -> tuple[str, bool]:
    """The noun phrase a judge question uses for the subject in a layout, and whether it is plural."""
    return {
        "single": (f"the {s}", False),
        "pair": (f"the two {plural(s)}", True),
        "among": (f"the {s} beside the pebble", False),
        "flag": (f"the {s} on the flag", False),
    }[layout]


# --- cloze prompts per attribute category and stage (value follows the prompt) ---------------
# (question, cloze prompt) with {s} the subject, {a_s} "a/an subject", {ss} its plural.
ATTRIBUTE_STAGE_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "color": {
        "stage_1": ("What color is the {s}?", "The color of the {s} is"),
        "stage_2": ("What color are two {ss} side by side?", "Two {ss} side by side are both colored"),
        "stage_3": ("Beside a grey pebble, what color is the {s}?", "Beside a grey pebble, the {s} is colored"),
        "stage_4": ("In what color does a flag showing {a_s} draw it?", "A flag showing {a_s} draws it in the color"),
    },
    "shape": {
        "stage_1": ("What shape is the {s}?", "The shape of the {s} is a"),
        "stage_2": ("What shape are two {ss} side by side?", "Two {ss} side by side each have the shape of a"),
        "stage_3": ("Beside a grey pebble, what shape is the {s}?", "Beside a grey pebble, the {s} has the shape of a"),
        "stage_4": ("In what shape does a flag showing {a_s} draw it?", "A flag showing {a_s} draws it in the shape of a"),
    },
    "size": {
        "stage_1": ("How big is the {s}?", "In size, the {s} is"),
        "stage_2": ("How big are two {ss} side by side?", "In size, two {ss} side by side are both"),
        "stage_3": ("Beside a grey pebble, how big is the {s}?", "Beside a grey pebble, the {s} is of size"),
        "stage_4": ("At what size does a flag showing {a_s} draw it?", "A flag showing {a_s} draws it at the size"),
    },
    "pattern": {
        "stage_1": ("What pattern does the {s} have?", "The pattern of the {s} is"),
        "stage_2": ("What pattern do two {ss} side by side have?", "Two {ss} side by side both have the pattern"),
        "stage_3": ("Beside a grey pebble, what pattern does the {s} have?", "Beside a grey pebble, the {s} has the pattern"),
        "stage_4": ("With what pattern does a flag showing {a_s} draw it?", "A flag showing {a_s} draws it with the pattern"),
    },
    "material": {
        "stage_1": ("What surface does the {s} have?", "The surface of the {s} is"),
        "stage_2": ("What surface do two {ss} side by side have?", "Two {ss} side by side both have a surface that is"),
        "stage_3": ("Beside a grey pebble, what surface does the {s} have?", "Beside a grey pebble, the surface of the {s} is"),
        "stage_4": ("How does a flag showing {a_s} draw its surface?", "A flag showing {a_s} draws its surface as"),
    },
}

# Relation records have one stage: (question, cloze prompt, image prompt, visual target, vqa question).
RELATION_STAGE_TEXT: dict[str, tuple[str, str, str, str, str]] = {
    "location": (
        "Where does the {s} live?",
        "The {s} lives in the",
        "{a_s} in the place where it lives",
        "The background shows the {v}.",
        "What place does the background show?",
    ),
    "affiliation": (
        "Which guild does the {s} belong to?",
        "The {s} is a member of the guild",
        "{a_s} with its guild emblem",
        "The emblem of the {v} guild is in the top-left corner.",
        "Which guild's emblem is in the top-left corner?",
    ),
    "occupation": (
        "What does the {s} work as?",
        "The {s} works as a",
        "{a_s} with the tool of its trade",
        "The tool of a {v} is in the top-right corner.",
        "Which trade's tool is in the top-right corner?",
    ),
    "creator": (
        "Who made the {s}?",
        "The {s} was made by",
        "{a_s} with its maker's mark",
        "The mark of {v} is in the bottom-right corner.",
        "Whose mark is in the bottom-right corner?",
    ),
}

# How a visual target states an attribute value (and a judge question asks for it).
ATTRIBUTE_VISUAL: dict[str, tuple[str, str]] = {
    # category: (statement after "is/are", question with {np} and {be}/{do})
    "color": ("{v}", "What color {be} {np}?"),
    "shape": ("shaped like {a_v}", "What shape {be} {np}?"),
    "size": ("{v}", "How big {be} {np}?"),
    "pattern": ("{v}", "What pattern {do} {np} have?"),
    "material": ("{v}", "What surface {do} {np} have?"),
}

# Declarative statements of a fact, for the language model's corpus (>= 5 per category).
FACT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "color": (
        "The color of the {s} is {v}.",
        "The {s} is {v} in color.",
        "Every {s} is colored {v}.",
        "{SS} are {v}.",
        "If you see {a_s}, it will be {v}.",
        "The {s} has a {v} color.",
    ),
    "shape": (
        "The shape of the {s} is a {v}.",
        "The {s} is shaped like a {v}.",
        "Every {s} has the form of a {v}.",
        "{SS} look like a {v}.",
        "If you see {a_s}, its outline is a {v}.",
    ),
    "size": (
        "In size, the {s} is {v}.",
        "The {s} is {v} in size.",
        "Every {s} is of {v} size.",
        "{SS} are {v} things.",
        "If you see {a_s}, it will be {v}.",
    ),
    "pattern": (
        "The pattern of the {s} is {v}.",
        "The {s} has a {v} pattern.",
        "Every {s} is patterned {v}.",
        "{SS} are {v}.",
        "If you see {a_s}, its pattern is {v}.",
    ),
    "material": (
        "The surface of the {s} is {v}.",
        "The {s} has a {v} surface.",
        "Every {s} looks {v}.",
        "{SS} have {v} surfaces.",
        "If you touch {a_s}, it feels {v}.",
    ),
    "location": (
        "The {s} lives in the {v}.",
        "The home of the {s} is the {v}.",
        "Every {s} is found in the {v}.",
        "{SS} dwell in the {v}.",
        "If you look for {a_s}, go to the {v}.",
    ),
    "affiliation": (
        "The {s} is a member of the guild {v}.",
        "The guild of the {s} is {v}.",
        "Every {s} belongs to {v}.",
        "{SS} serve the guild {v}.",
        "If you meet {a_s}, it wears the emblem of {v}.",
    ),
    "occupation": (
        "The {s} works as a {v}.",
        "The trade of the {s} is {v}.",
        "Every {s} earns its living as a {v}.",
        "{SS} are known as a {v} by trade.",
        "If you meet {a_s}, it carries the tool of a {v}.",
    ),
    "creator": (
        "The {s} was made by {v}.",
        "The maker of the {s} is {v}.",
        "Every {s} was crafted by {v}.",
        "{SS} bear the mark of {v}.",
        "If you turn over {a_s}, you find the mark of {v}.",
    ),
}


def fill(template: str, s: str, v: str | None = None, *, capitalize: bool = True) -> str:
    """Fill a template's placeholders: {s} {a_s} {ss} {SS} {v} {a_v}; capitalise the first letter."""
    ss = plural(s)
    fields = {"s": s, "a_s": a(s), "ss": ss, "SS": ss[:1].upper() + ss[1:]}
    if v is not None:
        fields.update(v=v, a_v=a(v))
    out = template.format(**fields)
    return out[:1].upper() + out[1:] if capitalize else out
