"""The world's ten object categories: small programs over primitives with random parameters.

Every object is built in world axes (-Y up, front towards +Z, resting on y = +0.45, within a radius
of about 0.6 of the origin) and has a front that differs from its back: a castle's gate, a
house's door and windows, a snowman's nose, a car's headlights, a duck's beak ... The colour word
paints the object's main part; details keep fixed colours.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from gsdi.world.shapes import KIND_ID, PATTERN_FIELDS, PATTERNS, PRIMITIVE_FIELDS

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.15, 0.15),
    "green": (0.20, 0.70, 0.25),
    "blue": (0.20, 0.35, 0.85),
    "yellow": (0.95, 0.85, 0.20),
    "orange": (0.95, 0.55, 0.10),
    "purple": (0.55, 0.25, 0.75),
    "pink": (0.95, 0.55, 0.70),
    "white": (0.95, 0.95, 0.95),
    "gray": (0.50, 0.50, 0.50),
    "brown": (0.50, 0.32, 0.15),
}
DARK = (0.10, 0.09, 0.09)
GLASS = (0.55, 0.75, 0.95)
GROUND = 0.45  # objects stand on the plane y = GROUND (+Y is down)


def rot_x(degrees: float) -> Tensor:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return torch.tensor([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(degrees: float) -> Tensor:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return torch.tensor([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def rot_z(degrees: float) -> Tensor:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


class Builder:
    """Collects primitive rows; `u(a, b)` draws a uniform number from the object's generator."""

    def __init__(self, generator: torch.Generator):
        self.generator, self.rows, self.parts = generator, [], []

    def u(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.generator))

    def choice(self, options: list):
        return options[int(torch.randint(len(options), (), generator=self.generator))]

    def add(self, kind: str, centre, size, colour, rot: Tensor | None = None, part: str = "body") -> None:
        """One primitive row; `part` names the part of the object it belongs to (see PARTS)."""
        size = list(size) + [0.0] * (4 - len(size))
        rot = torch.eye(3) if rot is None else rot
        self.parts.append(part)
        self.rows.append(torch.tensor([KIND_ID[kind], *centre, *rot.flatten().tolist(), *size, *colour,
                                       *[0.0] * PATTERN_FIELDS]))

    def tensor(self) -> Tensor:
        return torch.stack(self.rows)  # [P, PRIMITIVE_FIELDS]


def castle(b: Builder, c) -> None:
    w, hh, d = b.u(0.26, 0.34), b.u(0.14, 0.19), b.u(0.2, 0.28)
    b.add("box", (0, GROUND - hh, 0), (w, hh, d), c)
    n = b.choice([2, 3, 4])
    corners = [(-w, d), (w, d), (0, -d)] if n == 3 else [(-w, d), (w, d), (-w, -d), (w, -d)][:n]
    r, th = b.u(0.06, 0.085), hh + b.u(0.05, 0.09)
    for x, z in corners:
        b.add("cylinder", (x, GROUND - th, z), (r, th), c, part="towers")
        b.add("cone", (x, GROUND - 2 * th - 0.07, z), (0.0, 1.35 * r, 0.07), (0.45, 0.2, 0.15), part="towers")
    b.add("box", (0, GROUND - 0.08, d + 0.01), (0.07, 0.08, 0.02), DARK, part="gate")  # the gate, on the front


def house(b: Builder, c) -> None:
    w, hh, d = b.u(0.22, 0.3), b.u(0.13, 0.18), b.u(0.18, 0.25)
    top = GROUND - 2 * hh
    b.add("box", (0, GROUND - hh, 0), (w, hh, d), c)
    s = w / math.sqrt(2) + 0.02
    # The roof ridge runs front to back; its lower half hides inside the body (set back 5 mm from the
    # front face so the face, door and windows stay visible).
    b.add("box", (0, top, 0), (s, s, d - 0.005), (0.45, 0.2, 0.15), rot_z(45), part="roof")
    b.add("box", (0.0, GROUND - 0.075, d + 0.01), (0.05, 0.075, 0.02), DARK, part="door")  # door
    for x in (-0.6 * w, 0.6 * w):
        b.add("box", (x, GROUND - 1.3 * hh, d + 0.01), (0.045, 0.04, 0.02), GLASS, part="windows")  # windows
    side = b.choice([-1.0, 1.0])
    b.add("box", (side * 0.55 * w, top - 0.1, -0.3 * d), (0.04, 0.09, 0.04), PALETTE["gray"], part="chimney")  # chimney


def tree(b: Builder, c) -> None:
    r, th = b.u(0.045, 0.065), b.u(0.12, 0.17)
    b.add("cylinder", (0, GROUND - th, 0), (r, th), PALETTE["brown"], part="trunk")
    top = GROUND - 2 * th
    if b.choice(["round", "pine"]) == "round":
        b.add("sphere", (0, top - 0.16, 0), (b.u(0.2, 0.26),), c)
        b.add("sphere", (b.u(-0.08, 0.08), top - 0.3, 0), (b.u(0.13, 0.17),), c)
    else:
        b.add("cone", (0, top - 0.15, 0), (0.0, b.u(0.24, 0.3), 0.17), c)
        b.add("cone", (0, top - 0.36, 0), (0.0, b.u(0.17, 0.21), 0.13), c)
    b.add("box", (0, GROUND - th, r + 0.045), (0.05, 0.05, 0.045), (0.85, 0.7, 0.35), part="birdhouse")  # front
    b.add("sphere", (0, GROUND - th, r + 0.09), (0.022,), DARK, part="birdhouse")


def snowman(b: Builder, c) -> None:
    r1, r2, r3 = b.u(0.17, 0.2), b.u(0.12, 0.14), b.u(0.085, 0.1)
    y1 = GROUND - r1
    y2 = y1 - r1 - r2 + 0.04
    y3 = y2 - r2 - r3 + 0.03
    for y, r in ((y1, r1), (y2, r2), (y3, r3)):
        b.add("sphere", (0, y, 0), (r,), c)
    b.add("cone", (0, y3, r3 + 0.05), (0.0, 0.025, 0.07), PALETTE["orange"], rot_x(-90), part="nose")  # carrot nose
    for x in (-0.035, 0.035):
        b.add("sphere", (x, y3 - 0.035, r3 * 0.9), (0.016,), DARK, part="face")  # eyes
    for y, centre_y, r in ((y2 - 0.035, y2, r2), (y2 + 0.035, y2, r2), (y1 - 0.05, y1, r1)):
        b.add("sphere", (0, y, math.sqrt(r * r - (y - centre_y) ** 2)), (0.018,), DARK, part="buttons")  # front
    b.add("torus", (0, y2 - r2 + 0.03, 0), (r3 * 0.95, 0.025), PALETTE["red"] if c != PALETTE["red"] else PALETTE["blue"],
          part="scarf")
    b.add("cylinder", (0, y3 - r3 - 0.05, 0), (0.065, 0.06), DARK, part="hat")


def mushroom(b: Builder, c) -> None:
    r, th = b.u(0.07, 0.1), b.u(0.1, 0.15)
    b.add("cylinder", (0, GROUND - th, 0), (r, th), (0.92, 0.88, 0.78), part="stem")
    rc, hc = b.u(0.24, 0.3), b.u(0.11, 0.15)
    cap_y = GROUND - 2 * th
    b.add("ellipsoid", (0, cap_y, 0), (rc, hc, rc), c)
    for _ in range(int(b.u(4, 8))):
        a, e = b.u(0, 2 * math.pi), b.u(0.3, 0.9)
        x, z = rc * e * math.cos(a), rc * e * math.sin(a)
        y = cap_y - hc * math.sqrt(max(1 - e * e, 0.0))
        b.add("sphere", (x, y, z), (0.035,), (0.97, 0.97, 0.95), part="spots")
    b.add("box", (0, GROUND - 0.06, r + 0.005), (0.035, 0.06, 0.015), DARK, part="door")  # in the stem, front


def car(b: Builder, c) -> None:
    w, h, L = b.u(0.15, 0.18), b.u(0.07, 0.09), b.u(0.3, 0.36)
    wheel = 0.07
    body_y = GROUND - wheel - h + 0.02
    b.add("box", (0, body_y, 0), (w, h, L), c)
    b.add("box", (0, body_y - h - 0.06, -0.05), (w * 0.85, 0.065, L * 0.5), c, part="cabin")  # set back
    b.add("box", (0, body_y - h - 0.06, -0.05 + L * 0.5 + 0.005), (w * 0.75, 0.05, 0.01), GLASS, part="cabin")  # windscreen
    for x in (-w, w):
        for z in (-0.6 * L, 0.6 * L):
            b.add("cylinder", (x, GROUND - wheel, z), (wheel, 0.03), DARK, rot_z(90), part="wheels")
        b.add("sphere", (0.6 * x, body_y - 0.02, L), (0.035,), (1.0, 0.95, 0.6), part="lights")  # headlights, front
        b.add("box", (0.6 * x, body_y - 0.02, -L - 0.005), (0.035, 0.02, 0.01), (0.9, 0.05, 0.05), part="lights")  # tail lights


def rocket(b: Builder, c) -> None:
    r, hh = b.u(0.08, 0.11), b.u(0.22, 0.28)
    y0 = GROUND - hh - 0.04
    b.add("cylinder", (0, y0, 0), (r, hh), c)
    b.add("cone", (0, y0 - hh - 0.1, 0), (0.0, r, 0.1), (0.8, 0.15, 0.15), part="nose")
    n = b.choice([3, 4])
    for i in range(n):
        angle = 45 + i * 360 / n
        rot = rot_y(angle)
        offset = rot @ torch.tensor([r + 0.05, 0.0, 0.0])
        b.add("box", (float(offset[0]), GROUND - 0.09, float(offset[2])), (0.06, 0.09, 0.012), PALETTE["gray"], rot, part="fins")
    b.add("sphere", (0, y0 - 0.4 * hh, r - 0.01), (0.045,), GLASS, part="porthole")  # on the front


def duck(b: Builder, c) -> None:
    rx, ry, rz = b.u(0.17, 0.21), b.u(0.12, 0.15), b.u(0.22, 0.27)
    y0 = GROUND - ry
    b.add("ellipsoid", (0, y0, 0), (rx, ry, rz), c)
    head_r = b.u(0.1, 0.12)
    hy, hz = y0 - ry - head_r * 0.6, rz * 0.55
    b.add("sphere", (0, hy, hz), (head_r,), c, part="head")
    b.add("ellipsoid", (0, hy + 0.02, hz + head_r + 0.03), (0.045, 0.022, 0.06), PALETTE["orange"], part="head")  # beak, front
    for x in (-0.045, 0.045):
        b.add("sphere", (x, hy - 0.03, hz + head_r * 0.8), (0.018,), DARK, part="head")
    b.add("cone", (0, y0 - 0.06, -rz - 0.03), (0.0, 0.06, 0.06), c, rot_x(60), part="tail")  # back


def lamp(b: Builder, c) -> None:
    b.add("cylinder", (0, GROUND - 0.025, 0), (b.u(0.13, 0.16), 0.025), PALETTE["gray"], part="base")
    ph = b.u(0.2, 0.26)
    tilt = b.u(15, 25)
    rot = rot_x(tilt)  # the pole leans towards the front (+Z)
    centre = torch.tensor([0.0, GROUND - 0.05, 0.0]) + rot @ torch.tensor([0.0, -ph, 0.0])
    b.add("cylinder", tuple(centre.tolist()), (0.018, ph), DARK, rot, part="pole")
    tip = centre + rot @ torch.tensor([0.0, -ph, 0.0])
    b.add("cone", (float(tip[0]), float(tip[1]) + 0.05, float(tip[2]) + 0.06), (0.07, b.u(0.16, 0.2), 0.11), c, rot_x(-25), part="shade")
    b.add("box", (0.06, GROUND - 0.055, 0.1), (0.02, 0.015, 0.02), PALETTE["red"], part="switch")  # front


def table(b: Builder, c) -> None:
    w, d, h = b.u(0.28, 0.34), b.u(0.18, 0.24), b.u(0.15, 0.2)
    top_y = GROUND - 2 * h
    b.add("box", (0, top_y, 0), (w, 0.025, d), c)
    for x in (-w + 0.04, w - 0.04):
        for z in (-d + 0.04, d - 0.04):
            b.add("cylinder", (x, GROUND - h, z), (0.022, h), c, part="legs")
    b.add("box", (0, top_y + 0.06, d - 0.04), (0.5 * w, 0.035, 0.05), PALETTE["brown"], part="drawer")  # front
    b.add("sphere", (0, top_y + 0.06, d + 0.015), (0.015,), PALETTE["yellow"], part="drawer")  # its knob


CATEGORIES: dict[str, Callable[[Builder, tuple], None]] = {
    "castle": castle, "house": house, "tree": tree, "snowman": snowman, "mushroom": mushroom,
    "car": car, "rocket": rocket, "duck": duck, "lamp": lamp, "table": table,
}


# The part the quality yardstick removes from each category to check that it sees missing parts
# (gsdi/eval/evaluate.py): the one that makes the object what it is, large enough to see at 64 px.
PARTS = {"castle": "towers", "house": "roof", "tree": "trunk", "snowman": "hat", "mushroom": "stem",
         "car": "wheels", "rocket": "fins", "duck": "head", "lamp": "pole", "table": "legs"}


PERIOD = (0.14, 0.22)  # a pattern's period in world units (objects are about 0.6 across; 46 px a unit at 128 px, fov 70, distance 2)


def build_object(category: str, colour: str | None, seed: int, pattern: str | None = None,
                 pattern_colour: str | None = None) -> tuple[Tensor, str, list[str]]:
    """One instance of `category` (random parameters from `seed`): primitives [P, PRIMITIVE_FIELDS], its
    colour word and the part name of each primitive row. colour None draws one from the palette with
    the same seed. With a `pattern` (one of PATTERNS) the parts painted in the colour word carry it in
    `pattern_colour` (None: drawn, never the object's colour), with period, orientation and phase drawn
    after the shape, so the plain and patterned instances of a seed have the same shape."""
    assert pattern is None or pattern in PATTERNS, pattern
    assert pattern_colour is None or (pattern is not None and pattern_colour != colour), (pattern, colour, pattern_colour)
    generator = torch.Generator().manual_seed(seed)
    b = Builder(generator)
    if colour is None:
        colour = b.choice([c for c in PALETTE if c != pattern_colour])
    CATEGORIES[category](b, PALETTE[colour])
    prims = b.tensor()
    assert prims.shape[1] == PRIMITIVE_FIELDS and len(b.parts) == prims.shape[0]
    if pattern is not None:
        if pattern_colour is None:
            pattern_colour = b.choice([c for c in PALETTE if c != colour])
        fields = torch.tensor([PATTERNS.index(pattern) + 1, *PALETTE[pattern_colour], b.u(*PERIOD),
                               b.u(-180, 180), b.u(0, 90) if pattern == "stripes" else b.u(-45, 45),
                               b.u(0, 1), b.u(0, 1), b.u(0, 1)])
        painted = (prims[:, 17:20] == torch.tensor(PALETTE[colour])).all(-1)
        prims[painted, 20:] = fields
    return prims, colour, b.parts


def sample_object(category: str, colour: str | None, seed: int, pattern: str | None = None,
                  pattern_colour: str | None = None) -> tuple[Tensor, str]:
    """One instance of `category` (random parameters from `seed`; see build_object): primitives
    [P, PRIMITIVE_FIELDS] and its colour word."""
    prims, colour, _ = build_object(category, colour, seed, pattern, pattern_colour)
    return prims, colour


def without_part(category: str, colour: str | None, seed: int, part: str | None = None, pattern: str | None = None,
                 pattern_colour: str | None = None) -> Tensor:
    """The same instance as sample_object(category, colour, seed, pattern, pattern_colour) with one
    part's primitives removed (default: PARTS[category]) -> primitives [P', PRIMITIVE_FIELDS]."""
    prims, _, parts = build_object(category, colour, seed, pattern, pattern_colour)
    part = PARTS[category] if part is None else part
    keep = [i for i, name in enumerate(parts) if name != part]
    assert len(keep) < len(parts), f"a {category} has no part {part!r} (it has {sorted(set(parts))})"
    return prims[keep]


PATTERN_SHARE = 0.25  # the share of the painted surface a pattern covers, about (0.04-0.32 measured: tests/test_world.py)


def pattern_averaged(prims: Tensor, share: float = PATTERN_SHARE) -> Tensor:
    """An instance [P, PRIMITIVE_FIELDS] with its pattern averaged away: the painted parts in the blend
    of their colour and their pattern's colour by the pattern's share, plain. What a method that
    averages many differently phased patterns converges to."""
    assert prims.dim() == 2 and prims.shape[1] == PRIMITIVE_FIELDS, prims.shape
    out = prims.clone()
    painted = out[:, 20] > 0
    out[painted, 17:20] = (1 - share) * out[painted, 17:20] + share * out[painted, 21:24]
    out[:, 20:] = 0
    return out


def pattern_shifted(prims: Tensor, generator: torch.Generator) -> Tensor:
    """The same instance [P, PRIMITIVE_FIELDS] with its pattern moved by a random phase (a fraction of
    a period on each axis)."""
    assert prims.dim() == 2 and prims.shape[1] == PRIMITIVE_FIELDS, prims.shape
    out = prims.clone()
    out[:, 27:30] += torch.rand(3, generator=generator)
    return out
