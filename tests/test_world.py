"""The procedural world: determinism, exact silhouettes, fronts that differ from backs, the grammar."""

from __future__ import annotations

import math

import pytest
import torch

from gsdi.cameras import orbit_cameras
from gsdi.errors import GsdiError
from gsdi.world import (
    CATEGORIES,
    PALETTE,
    VOCABULARY,
    Prompt,
    describe,
    pad_objects,
    parse,
    render_objects,
    sample_object,
)
from gsdi.world.shapes import KIND_ID, PRIMITIVE_FIELDS, sdf


def views(n, azimuth, elevation=15.0, size=64, distance=1.6, fov=45.0):
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return orbit_cameras(full(azimuth), full(elevation), full(distance), full(fov), size, size)


def test_instances_are_deterministic_per_seed_and_vary_across_seeds():
    for category in CATEGORIES:
        a, colour_a = sample_object(category, None, 7)
        b, colour_b = sample_object(category, None, 7)
        assert torch.equal(a, b) and colour_a == colour_b
        c, _ = sample_object(category, "red", 8)
        assert not (a.shape == c.shape and torch.equal(a, c))
    prims = pad_objects([sample_object("castle", "blue", 1)[0]] * 2)
    r1, _ = render_objects(prims, views(2, 30.0))
    r2, _ = render_objects(prims, views(2, 30.0))
    assert torch.equal(r1, r2)


def test_rendering_in_parts_gives_the_same_pixels(monkeypatch):
    """render_objects traces MAX_RAYS rays a call; splitting a batch between calls changes no pixel."""
    import gsdi.world.render as render

    prims = pad_objects([sample_object(c, None, 3, "stripes", "white")[0] for c in ("castle", "car", "duck")])
    cams = orbit_cameras(torch.tensor([0.0, 120.0, 240.0]), torch.tensor([15.0, 30.0, 0.0]), torch.full((3,), 1.7),
                         torch.full((3,), 50.0), 48, 48)
    whole_rgb, whole_alpha = render_objects(prims, cams)
    monkeypatch.setattr(render, "MAX_RAYS", {"cpu": 48 * 48 + 1})  # one camera a call
    rgb, alpha = render_objects(prims, cams)
    assert alpha.sum() > 0 and torch.equal(alpha, whole_alpha)
    # colours to within rounding (a matrix product's kernel may depend on how many rays it gets)
    torch.testing.assert_close(rgb, whole_rgb, atol=1e-6, rtol=0)


def test_sphere_silhouette_matches_its_analytic_projection():
    radius, distance, fov, size = 0.4, 2.0, 50.0, 96
    row = torch.zeros(1, 1, PRIMITIVE_FIELDS)
    row[0, 0, 0] = KIND_ID["sphere"]
    row[0, 0, 4:13] = torch.eye(3).flatten()
    row[0, 0, 13] = radius
    row[0, 0, 17:20] = 0.5
    cams = orbit_cameras(torch.tensor([20.0]), torch.tensor([30.0]), torch.tensor([distance]), torch.tensor([fov]), size, size)
    _, alpha = render_objects(row, cams)
    focal = 0.5 * size / math.tan(math.radians(fov / 2))
    pixel_radius = focal * math.tan(math.asin(radius / distance))  # the silhouette cone's half angle
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    disc = ((xs - size / 2) ** 2 + (ys - size / 2) ** 2) <= pixel_radius**2
    mask = alpha[0, ..., 0] > 0.5
    iou = (mask & disc).sum() / (mask | disc).sum()
    assert iou > 0.97, iou


@pytest.mark.parametrize("kind, size, inside, outside", [
    ("box", (0.2, 0.1, 0.3, 0), (0.19, 0.0, 0.29), (0.21, 0.0, 0.0)),
    ("cylinder", (0.1, 0.2, 0, 0), (0.0, 0.19, 0.09), (0.0, 0.21, 0.0)),
    ("cone", (0.0, 0.2, 0.1, 0), (0.0, 0.09, 0.19), (0.0, -0.09, 0.05)),  # tip at the top (-Y)
    ("torus", (0.3, 0.05, 0, 0), (0.3, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ("ellipsoid", (0.3, 0.1, 0.2, 0), (0.29, 0.0, 0.0), (0.0, 0.11, 0.0)),
])
def test_primitive_insides(kind, size, inside, outside):
    size = torch.tensor([size], dtype=torch.float32)
    assert sdf(KIND_ID[kind], torch.tensor([inside]), size) < 0
    assert sdf(KIND_ID[kind], torch.tensor([outside]), size) > 0


def test_every_category_differs_front_to_back():
    """A front view and the mirrored back view would be equal for an object symmetric front to back."""
    objects = pad_objects([sample_object(c, "gray", 3)[0] for c in CATEGORIES])
    n = len(CATEGORIES)
    _, front = render_objects(objects, views(n, 0.0, elevation=0.0))
    _, back = render_objects(objects, views(n, 180.0, elevation=0.0))
    for i, category in enumerate(CATEGORIES):
        differ = (front[i] - back[i].flip(1)).abs().mean().item()  # silhouettes alone
        rgb_front, _ = render_objects(objects[i : i + 1], views(1, 0.0, elevation=0.0))
        rgb_back, _ = render_objects(objects[i : i + 1], views(1, 180.0, elevation=0.0))
        colour_differ = (rgb_front - rgb_back.flip(2)).abs().mean().item()
        assert differ > 0.002 or colour_differ > 0.01, (category, differ, colour_differ)


def test_the_colour_word_paints_the_object():
    objects = pad_objects([sample_object("car", colour, 0)[0] for colour in ("red", "blue")])
    rgb, alpha = render_objects(objects, views(2, 40.0))
    mean = [(rgb[i] * alpha[i]).sum((0, 1)) / alpha[i].sum() for i in range(2)]
    assert mean[0][0] > mean[0][2] and mean[1][2] > mean[1][0]


def test_grammar():
    assert parse("a castle") == Prompt("castle")
    assert parse("A Red castle") == Prompt("castle", "red")
    assert parse("an orange car, back view") == Prompt("car", "orange", "back")
    assert parse("blue duck") == Prompt("duck", "blue")
    assert describe("car", "orange", "side") == "an orange car, side view"
    assert all(parse(describe(c, col)) == Prompt(c, col) for c in CATEGORIES for col in PALETTE)
    with pytest.raises(GsdiError, match="does not know 'dragon'") as info:
        parse("a red dragon")
    assert "castle" in str(info.value) and "red" in str(info.value)  # lists the vocabulary
    for bad in ("a red", "a castle house", "a castle, up view", ""):
        with pytest.raises(GsdiError):
            parse(bad)
    assert len(VOCABULARY) == len(set(VOCABULARY))


def test_unknown_word_error_lists_words_only():
    from gsdi.world import parse

    with pytest.raises(GsdiError) as info:
        parse("a red dragon")
    message = str(info.value)
    words = message.split("its words are: ")[1].split(" (")[0].split()
    assert "," not in words and "castle" in words and "red" in words and "view" in words


def test_common_spellings_and_sentence_punctuation_are_read():
    assert parse("a grey castle") == parse("a gray castle") == Prompt("castle", "gray")
    assert parse("A red castle.") == parse("a red castle!") == Prompt("castle", "red")
    assert parse("a blue car, back view.") == Prompt("car", "blue", "back")


def test_patterns_are_painted_on_the_object_and_keep_its_shape():
    """A patterned instance has the plain instance's silhouette and shows both colours on the painted
    parts, its own colour more than the pattern's (so "a blue house with yellow stripes" is not "a
    yellow house with blue stripes")."""
    from gsdi.world.shapes import PATTERNS

    for pattern in PATTERNS:
        plain, colour = sample_object("house", "blue", 3)
        patterned, same = sample_object("house", "blue", 3, pattern, "yellow")
        assert same == colour and torch.equal(plain[:, :20], patterned[:, :20])  # same shape and colours
        rgb, alpha = render_objects(pad_objects([plain, patterned]), views(2, 20.0, size=96))
        assert torch.equal(alpha[0], alpha[1])
        yellow = torch.tensor(PALETTE["yellow"])
        hue = rgb / rgb.sum(-1, keepdim=True).clamp_min(1e-6)  # shading scales colour: compare its proportions
        blue = torch.tensor(PALETTE["blue"])
        near_yellow = ((hue - yellow / yellow.sum()).abs().sum(-1) < 0.05) & (alpha[..., 0] > 0)
        near_blue = ((hue - blue / blue.sum()).abs().sum(-1) < 0.05) & (alpha[..., 0] > 0)
        share, own = (near[1].float().sum() / alpha[1].sum() for near in (near_yellow, near_blue))
        assert near_yellow[0].sum() == 0 and 0.03 < share < 0.35 and share < own, (pattern, float(share), float(own))


def test_pattern_grammar():
    assert parse("a blue car with yellow stripes") == Prompt("car", "blue", None, "stripes", "yellow")
    assert parse("a red castle with white stripes, front view") == Prompt("castle", "red", "front", "stripes", "white")
    assert parse("a duck with pink dots") == Prompt("duck", None, None, "dots", "pink")
    assert describe("car", "blue", "side", "checks", "orange") == "a blue car with orange checks, side view"
    assert all(parse(describe("lamp", "green", view, p, "brown")) == Prompt("lamp", "green", view, p, "brown")
               for p in ("stripes", "dots", "checks") for view in (None, "back"))
    for bad in ("a car with stripes", "a car with yellow", "a blue car with blue stripes", "a car with yellow stripes dots"):
        with pytest.raises(GsdiError):
            parse(bad)


def test_patterned_pools_label_what_they_show():
    from gsdi.world import render_pool

    pool = render_pool(24, seed=5, size=32, device="cpu", patterned=0.5, supersample=2)
    assert pool["images"].shape == (24, 3, 32, 32)
    plain = pool["pattern"] == 0
    assert 0 < int(plain.sum()) < 24 and (pool["pattern_colour"][plain] == -1).all()
    assert ((pool["pattern_colour"][~plain] >= 0) & (pool["pattern_colour"][~plain] != pool["colour"][~plain])).all()
    assert torch.equal(render_pool(6, seed=5, size=32, device="cpu")["category"], render_pool(6, seed=5, size=32, device="cpu")["category"])
