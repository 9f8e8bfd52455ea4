"""Procedural renderer: a :class:`Scene` -> an RGB image (numpy, uint8, ``(H, W, 3)``).

Drawing happens on a 32-unit canvas scaled to ``image_size`` (32 by default), in this order:

1. background from ``location`` (sky above a horizon, ground below; uniform grey when absent);
2. the layout's props (a grey pebble for ``among``, a flag on a pole for ``flag``);
3. the subject: ``shape`` mask at a ``size``-dependent radius, filled with ``color``, overlaid with
   ``pattern`` (a darker shade of the fill) and edged by ``material`` (outline or halo);
4. corner tiles for the relations: affiliation emblem top-left, occupation tool top-right,
   creator mark bottom-right.

Everything is a pure function of the scene and, when jitter is asked for, of a seeded
``numpy.random.Generator``: the same inputs give the same pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Sequence

import numpy as np

from .vocab import ATTRIBUTE_VALUES, LAYOUTS, RELATION_VALUES

RGB = tuple[int, int, int]

COLORS: dict[str, RGB] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 190, 70),
    "teal": (20, 170, 170),
    "blue": (40, 80, 230),
    "purple": (140, 60, 200),
    "pink": (245, 130, 190),
}

# (sky, ground); None -> neutral grey everywhere.
BACKGROUNDS: dict[str | None, tuple[RGB, RGB]] = {
    "meadow": ((150, 200, 240), (70, 120, 45)),
    "desert": ((245, 225, 180), (205, 165, 95)),
    "ocean": ((175, 215, 245), (25, 60, 140)),
    "city": ((125, 125, 140), (65, 65, 75)),
    "cave": ((40, 30, 28), (85, 70, 55)),
    None: ((128, 128, 128), (128, 128, 128)),
}
HORIZON = 20.0

# Half-size (radius) of the subject on the 32-unit canvas: alone, and in the smaller slots of the
# other layouts. Classes stay apart under +-10% scale jitter (5.5 < 7.2; 3.9 < 4.5; 5.5 < 6.3).
RADIUS: dict[str, dict[str, float]] = {
    "single": {"small": 5.0, "medium": 8.0, "large": 11.0},
    "slot": {"small": 3.5, "medium": 5.0, "large": 7.0},
}
# Material as the subject's edge: (inner ring, outer ring) colours, one canvas unit each. A light and
# a dark ring together stay visible on every background and on the white flag.
MATERIAL_EDGE: dict[str, tuple[RGB, RGB] | None] = {
    "matte": None,
    "metallic": ((205, 210, 225), (35, 35, 45)),
    "wooden": ((150, 85, 30), (45, 25, 10)),
    "glowing": ((255, 255, 120), (255, 255, 120)),
}
PEBBLE: RGB = (150, 150, 150)
FLAG: RGB = (245, 245, 245)
POLE: RGB = (110, 80, 50)

# Corner tiles: (tile colour, {value: (glyph, glyph colour)}).
TILE = 7
EMBLEMS: tuple[RGB, dict[str, tuple[str, RGB]]] = (
    (25, 25, 25),
    {
        "Sunhall": ("disc", (250, 210, 0)),
        "Tidehold": ("bars", (60, 140, 255)),
        "Leafguard": ("triangle", (60, 200, 60)),
        "Emberkin": ("diamond", (240, 60, 30)),
        "Frostmark": ("plus", (240, 240, 255)),
    },
)
TOOLS: tuple[RGB, dict[str, tuple[str, RGB]]] = (
    (230, 230, 230),
    {
        "smith": ("tee", (60, 60, 60)),
        "painter": ("diagonal", (200, 30, 30)),
        "sailor": ("cup", (20, 40, 140)),
        "farmer": ("stalk", (30, 130, 30)),
        "scribe": ("lines", (20, 20, 20)),
    },
)
MARKS: tuple[RGB, dict[str, tuple[str, RGB]]] = (
    (200, 180, 150),
    {
        "Ottavi": ("ex", (120, 20, 140)),
        "Brenn": ("vbar", (190, 20, 20)),
        "Kasimir": ("hbar", (20, 60, 190)),
        "Delphine": ("dot", (20, 120, 40)),
        "Yusra": ("ell", (220, 110, 0)),
    },
)


@dataclass(frozen=True)
class Scene:
    """What one image shows. Relations left ``None`` are not drawn (neutral background, no tiles)."""

    color: str
    shape: str
    size: str
    pattern: str
    material: str
    location: str | None = None
    affiliation: str | None = None
    occupation: str | None = None
    creator: str | None = None
    layout: str = "single"

    def __post_init__(self) -> None:
        for cat, values in ATTRIBUTE_VALUES.items():
            if getattr(self, cat) not in values:
                raise ValueError(f"Scene.{cat}={getattr(self, cat)!r} is not one of {', '.join(values)}")
        for cat, values in RELATION_VALUES.items():
            val = getattr(self, cat)
            if val is not None and val not in values:
                raise ValueError(f"Scene.{cat}={val!r} is not one of {', '.join(values)} (or None)")
        if self.layout not in LAYOUTS:
            raise ValueError(f"Scene.layout={self.layout!r} is not one of {', '.join(LAYOUTS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> "Scene":
        return replace(self, **changes)


@dataclass(frozen=True)
class Jitter:
    """Random variation for training renders: position (units), scale factor, colour noise."""

    position: float = 1.5
    scale: float = 0.10
    color_shift: float = 8.0
    pixel_noise: float = 6.0
    horizon: float = 1.0


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.1 * r
    if shape == "triangle":  # apex up, base at +0.8 r
        inside_y = (dy >= -r) & (dy <= 0.8 * r)
        return inside_y & (np.abs(dx) <= (dy + r) / 1.8)
    if shape == "cross":
        arm = r / 2.8
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise KeyError(shape)


def _pattern_mask(pattern: str, dx: np.ndarray, dy: np.ndarray, unit: float) -> np.ndarray:
    """Where the pattern darkens the fill; the phase moves with the object's centre."""
    if pattern == "plain":
        return np.zeros(dx.shape, dtype=bool)
    if pattern == "striped":
        return (np.floor(dy / (2 * unit)).astype(int) % 2) == 1
    if pattern == "checkered":
        return (np.floor(dx / (2 * unit)).astype(int) + np.floor(dy / (2 * unit)).astype(int)) % 2 == 1
    if pattern == "dotted":  # one dot at the centre, then every third cell
        return (np.floor(dx / unit + 0.5) % 3 == 0) & (np.floor(dy / unit + 0.5) % 3 == 0)
    raise KeyError(pattern)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _glyph(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Glyph masks on a tile with local coordinates u, v in [0, 7) (x right, y down)."""
    cu, cv = u - 3.0, v - 3.0
    return {
        "disc": cu * cu + cv * cv <= 5.0,
        "bars": ((np.abs(cv + 1.5) <= 0.6) | (np.abs(cv - 1.5) <= 0.6)) & (np.abs(cu) <= 2.6),
        "triangle": (cv >= -2.6) & (cv <= 2.2) & (np.abs(cu) <= (cv + 2.6) / 1.8),
        "diamond": np.abs(cu) + np.abs(cv) <= 2.8,
        "plus": ((np.abs(cu) <= 0.6) & (np.abs(cv) <= 2.6)) | ((np.abs(cv) <= 0.6) & (np.abs(cu) <= 2.6)),
        "tee": ((np.abs(cv + 2.0) <= 0.7) & (np.abs(cu) <= 2.6)) | ((np.abs(cu) <= 0.6) & (np.abs(cv) <= 2.6)),
        "diagonal": (np.abs(cu - cv) <= 0.9) & (np.abs(cu) <= 2.6),
        "cup": ((np.abs(cu) <= 2.6) & (np.abs(cv - 2.0) <= 0.6))
        | ((np.abs(np.abs(cu) - 2.2) <= 0.6) & (np.abs(cv) <= 2.6)),
        "stalk": ((np.abs(cu) <= 0.6) & (np.abs(cv) <= 2.6)) | ((cu * cu + (cv + 1.6) ** 2) <= 2.2),
        "lines": ((np.abs(cv + 2.0) <= 0.5) | (np.abs(cv) <= 0.5) | (np.abs(cv - 2.0) <= 0.5)) & (np.abs(cu) <= 2.6),
        "ex": (np.abs(np.abs(cu) - np.abs(cv)) <= 0.8) & (np.abs(cu) <= 2.6),
        "vbar": (np.abs(cu) <= 1.0) & (np.abs(cv) <= 2.6),
        "hbar": (np.abs(cv) <= 1.0) & (np.abs(cu) <= 2.6),
        "dot": cu * cu + cv * cv <= 3.0,
        "ell": ((np.abs(cu + 1.8) <= 0.7) & (np.abs(cv) <= 2.6)) | ((np.abs(cv - 2.0) <= 0.7) & (np.abs(cu) <= 2.6)),
    }[kind]


def _slots(layout: str) -> list[tuple[float, float]]:
    """Centres of the subject copies on the 32-unit canvas."""
    return {
        "single": [(16.0, 16.0)],
        "pair": [(9.0, 16.0), (23.0, 16.0)],
        "among": [(10.0, 16.0)],
        "flag": [(17.5, 15.5)],
    }[layout]


def render(
    scene: Scene,
    *,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    jitter: Jitter | None = None,
) -> np.ndarray:
    """Draw ``scene`` as a ``(image_size, image_size, 3)`` uint8 array.

    Without ``rng`` (or with ``jitter=None``) the render is canonical; with both, position, scale,
    horizon and colours vary by the jitter's amounts, reproducibly for a given generator state.
    """
    if jitter is not None and rng is None:
        raise ValueError("render(jitter=...) needs rng=np.random.default_rng(seed) for reproducibility")
    j = jitter if rng is not None else None
    k = image_size / 32.0  # canvas units -> pixels
    ys, xs = np.mgrid[0:image_size, 0:image_size].astype(np.float64)
    ys = (ys + 0.5) / k
    xs = (xs + 0.5) / k

    def u(scale: float = 1.0) -> float:  # a uniform draw in [-scale, scale], 0 without jitter
        return float(rng.uniform(-scale, scale)) if j is not None else 0.0

    img = np.zeros((image_size, image_size, 3), dtype=np.float64)
    sky, ground = BACKGROUNDS[scene.location]
    horizon = HORIZON + (u(j.horizon) if j else 0.0)
    img[:] = sky
    img[ys >= horizon] = ground

    # props
    if scene.layout == "among":
        px, py = 24.0 + u(j.position if j else 0), 17.0 + u(j.position if j else 0)
        img[((xs - px) / 4.2) ** 2 + ((ys - py) / 3.2) ** 2 <= 1.0] = PEBBLE
    if scene.layout == "flag":
        ox, oy = u(j.position if j else 0), u(j.position if j else 0)
        img[(xs >= 6 + ox) & (xs < 7.5 + ox) & (ys >= 6 + oy) & (ys < 30)] = POLE
        img[(xs >= 7.5 + ox) & (xs < 28 + ox) & (ys >= 7 + oy) & (ys < 24 + oy)] = FLAG

    # subject copies
    fill = np.array(COLORS[scene.color], dtype=np.float64)
    if j is not None:
        fill = np.clip(fill + rng.normal(0, j.color_shift, 3), 0, 255)
    shade = fill * 0.45
    edge = MATERIAL_EDGE[scene.material]
    radius = RADIUS["single" if scene.layout == "single" else "slot"][scene.size]
    unit = 1.0  # pattern cell in canvas units: stripes and checks are 2 cells wide, dots 1 in 3
    for cx, cy in _slots(scene.layout):
        pos = j.position if j else 0.0
        cx, cy = cx + u(pos), cy + u(pos)
        r = radius * (1.0 + u(j.scale if j else 0.0))
        dx, dy = xs - cx, ys - cy
        mask = _shape_mask(scene.shape, dx, dy, r)
        if edge is not None:
            step = max(1, round(k))
            inner = _dilate(mask, step)
            img[_dilate(inner, step) & ~inner] = edge[1]
            img[inner & ~mask] = edge[0]
        img[mask] = fill
        img[mask & _pattern_mask(scene.pattern, dx, dy, unit)] = shade

    # corner tiles
    t = TILE
    for value, (tile_rgb, glyphs), (x0, y0) in (
        (scene.affiliation, EMBLEMS, (0.0, 0.0)),
        (scene.occupation, TOOLS, (32.0 - t, 0.0)),
        (scene.creator, MARKS, (32.0 - t, 32.0 - t)),
    ):
        if value is None:
            continue
        inside = (xs >= x0) & (xs < x0 + t) & (ys >= y0) & (ys < y0 + t)
        img[inside] = tile_rgb
        kind, glyph_rgb = glyphs[value]
        img[inside & _glyph(kind, xs - x0 - 0.5, ys - y0 - 0.5)] = glyph_rgb

    if j is not None and j.pixel_noise > 0:
        img = img + rng.normal(0, j.pixel_noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_batch(
    scenes: Sequence[Scene],
    *,
    image_size: int = 32,
    seed: int | None = None,
    jitter: Jitter | None = None,
) -> np.ndarray:
    """Render many scenes into ``(N, H, W, 3)`` uint8; jittered reproducibly from ``seed`` if given."""
    rng = np.random.default_rng(seed) if seed is not None else None
    if jitter is not None and rng is None:
        raise ValueError("render_batch(jitter=...) needs a seed")
    out = np.empty((len(scenes), image_size, image_size, 3), dtype=np.uint8)
    for i, sc in enumerate(scenes):
        out[i] = render(sc, image_size=image_size, rng=rng, jitter=jitter)
    return out


def contact_sheet(
    images: Iterable[np.ndarray],
    labels: Iterable[str],
    *,
    columns: int = 8,
    scale: int = 4,
    label_height: int = 34,
    marks: Iterable[bool | None] | None = None,
    title: str | None = None,
):
    """A labelled grid of images as a PIL image (each image upscaled ``scale`` x, nearest).

    ``labels``: up to three lines per image; a line wider than its cell ends in "~" (cut, not
    hidden). ``marks``: per image True (a green frame), False (a red frame) or None (none), e.g.
    a judge's verdict. ``title``: lines written above the grid (what the rows, labels and frames mean).
    """
    from PIL import Image, ImageDraw

    images, labels = list(images), list(labels)
    marks = list(marks) if marks is not None else [None] * len(images)
    if not (len(images) == len(labels) == len(marks)):
        raise ValueError(f"{len(images)} images, {len(labels)} labels and {len(marks)} marks: give one of each per image")
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    h, w = images[0].shape[:2]
    cw, ch = w * scale, h * scale + label_height
    rows = (len(images) + columns - 1) // columns
    head = 12 * len(title.split("\n")) + 6 if title else 0
    sheet = Image.new("RGB", (columns * cw, head + rows * ch), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    chars = max(cw // 6, 2)  # Pillow's default bitmap font is 6 px per character
    for n, line in enumerate((title or "").split("\n") if title else []):
        draw.text((3, 3 + 12 * n), line, fill=(0, 0, 0))
    for i, (im, lab, mark) in enumerate(zip(images, labels, marks)):
        x, y = (i % columns) * cw, head + (i // columns) * ch
        sheet.paste(Image.fromarray(im).resize((cw, h * scale), Image.NEAREST), (x, y))
        if mark is not None:
            draw.rectangle([x, y, x + cw - 1, y + h * scale - 1], outline=(0, 150, 60) if mark else (210, 30, 30),
                           width=max(scale // 2, 2))
        for n, line in enumerate(lab.split("\n")[:3]):
            text = line if len(line) <= chars else line[: chars - 1] + "~"
            draw.text((x + 2, y + h * scale + 1 + 11 * n), text, fill=(0, 0, 0))
    return sheet
