import numpy as np
import pytest

from unike_interp.data.synthworld import Jitter, Scene, contact_sheet, render, render_batch
from unike_interp.data.synthworld.render import BACKGROUNDS, COLORS, EMBLEMS, MARKS, TOOLS


BASE = Scene("red", "circle", "large", "plain", "matte", location="meadow", affiliation="Sunhall",
             occupation="smith", creator="Brenn")


def test_canonical_render_hand_checked_pixels():
    img = render(BASE)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert tuple(img[16, 16]) == COLORS["red"]              # centre of the subject
    sky, ground = BACKGROUNDS["meadow"]
    assert tuple(img[2, 14]) == sky                           # above the horizon, outside tiles
    assert tuple(img[30, 14]) == ground                       # below the horizon (y >= 20)
    assert tuple(img[0, 0]) == EMBLEMS[0]                     # tile colour top-left corner pixel
    assert tuple(img[3, 3]) == EMBLEMS[1]["Sunhall"][1]       # glyph (a disc) at the tile centre
    assert tuple(img[0, 31]) == TOOLS[0]
    assert tuple(img[31, 31]) == MARKS[0]
    assert tuple(img[28, 28]) == MARKS[1]["Brenn"][1]         # vertical bar through the tile centre


def test_no_relations_gives_neutral_background_and_no_tiles():
    img = render(Scene("blue", "square", "small", "plain", "matte"))
    grey = BACKGROUNDS[None][0]
    for y, x in [(0, 0), (0, 31), (31, 31), (31, 0)]:
        assert tuple(img[y, x]) == grey


def test_pattern_and_material_change_pixels_where_expected():
    plain = render(BASE)
    striped = render(BASE.with_(pattern="striped"))
    diff = np.any(plain != striped, axis=-1)
    assert diff.sum() > 50
    # every changed pixel is a darker shade of the fill
    assert np.allclose(striped[diff], np.rint(np.array(COLORS["red"]) * 0.45), atol=1)
    glowing = render(BASE.with_(material="glowing"))
    ring = np.any(plain != glowing, axis=-1)
    assert ring.sum() > 20 and not np.any(ring[16, 12:20])  # halo outside, centre untouched


@pytest.mark.parametrize("field, values", [
    ("color", ["red", "blue"]), ("shape", ["circle", "triangle"]), ("size", ["small", "large"]),
    ("pattern", ["plain", "dotted"]), ("material", ["matte", "wooden"]), ("location", ["meadow", "cave"]),
    ("affiliation", ["Sunhall", "Tidehold"]), ("occupation", ["smith", "sailor"]), ("creator", ["Brenn", "Yusra"]),
    ("layout", ["single", "flag"]),
])
def test_every_category_is_visible(field, values):
    a, b = (render(BASE.with_(**{field: v})) for v in values)
    assert np.any(a != b)


def test_deterministic_and_seeded_jitter():
    assert np.array_equal(render(BASE), render(BASE))
    scenes = [BASE, BASE.with_(layout="pair"), BASE.with_(layout="among")]
    a = render_batch(scenes, seed=5, jitter=Jitter())
    b = render_batch(scenes, seed=5, jitter=Jitter())
    c = render_batch(scenes, seed=6, jitter=Jitter())
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a[0], render(BASE))
    with pytest.raises(ValueError, match="seed"):
        render_batch(scenes, jitter=Jitter())
    with pytest.raises(ValueError, match="rng"):
        render(BASE, jitter=Jitter())


def test_larger_canvas_scales_the_same_drawing():
    small, big = render(BASE), render(BASE, image_size=64)
    assert big.shape == (64, 64, 3)
    assert tuple(big[32, 32]) == tuple(small[16, 16])


def test_invalid_scene_values_are_named():
    with pytest.raises(ValueError, match=r"Scene.color='mauve'"):
        Scene("mauve", "circle", "large", "plain", "matte")
    with pytest.raises(ValueError, match="Scene.location"):
        Scene("red", "circle", "large", "plain", "matte", location="moon")
    with pytest.raises(ValueError, match="Scene.layout"):
        Scene("red", "circle", "large", "plain", "matte", layout="grid")


def test_contact_sheet_size():
    ims = [render(BASE)] * 5
    sheet = contact_sheet(ims, ["a"] * 5, columns=4, scale=2, label_height=10)
    assert sheet.size == (4 * 64, 2 * (64 + 10))
    with pytest.raises(ValueError):
        contact_sheet(ims, ["a"] * 4)
