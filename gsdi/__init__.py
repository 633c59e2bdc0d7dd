"""gsdi: text-to-3D Gaussian splatting with SDI guidance.

Importing this package is cheap: torch, diffusers, gsplat and friends are imported where they
are used, so `import gsdi` and `gsdi --help` work without CUDA or model weights.

    >>> import gsdi
    >>> result = gsdi.generate("a castle", out="castle", preset="preview")  # doctest: +SKIP
"""

from gsdi.errors import GsdiError

__version__ = "0.1.0"
__all__ = ["GsdiError", "generate", "GenerateConfig", "make_config", "__version__"]


def __getattr__(name: str):
    # Lazy: these pull in torch, which `import gsdi` must not need.
    if name == "generate":
        from gsdi.generate import generate

        return generate
    if name in ("GenerateConfig", "make_config"):
        from gsdi import config

        return getattr(config, name)
    raise AttributeError(f"module 'gsdi' has no attribute {name!r}")
