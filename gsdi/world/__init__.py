"""A procedural 3D world with known ground truth: what the embedded prior learns and what gsdi is measured on.

Ten categories of objects built from primitives (`objects`), a prompt grammar over them (`language`)
and a batched ray-traced renderer with gsdi's cameras and background (`render`). The world sits
low in the house (the embedded prior reads its language); how generations are measured against it is
gsdi.eval, above the priors and the guidance (docs/eval/eval.md).
"""

from gsdi.world.language import VOCABULARY, Prompt, describe, parse
from gsdi.world.objects import CATEGORIES, PALETTE, sample_object
from gsdi.world.render import pad_objects, render_objects, render_pool

__all__ = ["VOCABULARY", "Prompt", "describe", "parse", "CATEGORIES", "PALETTE", "sample_object",
           "pad_objects", "render_objects", "render_pool"]
