"""gsdi: text-to-3D Gaussian splatting with SDI guidance.

Importing this package is cheap: torch, diffusers, gsplat and friends are imported where they
are used, so `import gsdi` and `gsdi --help` work without CUDA or model weights.

    >>> import gsdi
    >>> result = gsdi.generate("a castle", out="castle", preset="preview")  # doctest: +SKIP
"""

from gsdi.version import __version__  # noqa: E402

# These modules import torch and friends only inside their functions.
from gsdi.config import GenerateConfig, make_config  # noqa: E402
from gsdi.errors import GsdiError  # noqa: E402
from gsdi.run import generate  # noqa: E402

__all__ = ["GsdiError", "generate", "GenerateConfig", "make_config", "__version__"]
