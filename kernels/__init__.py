"""gsdi.kernels: a differentiable Gaussian-splat rasterizer in plain torch, with gsplat's conventions.

`rasterization` takes the same arguments as `gsplat.rasterization` (the subset gsdi uses: pinhole
cameras, classic mode, unpacked) and returns the same outputs, including the `meta` keys that
`gsplat.strategy.DefaultStrategy` reads (means2d with its gradient, radii int32 [C,N,2], width,
height, n_cameras, gaussian_ids=None). It is gsdi's CPU backend and the oracle gsplat is tested
against. Installed as `gsdi.kernels` (never as a top-level `kernels`).
"""

if __name__ == "kernels":
    # This folder was imported as a top-level `kernels`: a source checkout's root is on sys.path (as
    # `python -m pytest` or `python -c` run there puts it) and the name is PyPI's `kernels`, which
    # transformers probes and imports. Put whatever `import kernels` finds without the checkout's root in
    # this module's place (the import system returns what sys.modules holds). With none, an empty
    # namespace package stands in: transformers' probe (which imports a package it finds no metadata
    # for, without catching the error) reads that as no `kernels` installed, and a name imported from it
    # raises ImportError.
    import importlib.machinery
    import importlib.util
    import os
    import sys

    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _spec = importlib.machinery.PathFinder.find_spec(__name__, [p for p in sys.path if os.path.abspath(p or os.curdir) != _root])
    if _spec is None:  # an empty namespace package: no __file__, __path__ []
        _spec = importlib.machinery.ModuleSpec(__name__, None, is_package=True)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _module
    if _spec.loader is not None:
        _spec.loader.exec_module(_module)
else:
    from .projection import project_gaussians, quat_scale_to_covar, spherical_harmonics
    from .rasterize import isect_tiles, rasterize_to_pixels
    from .rendering import rasterization

__all__ = ["rasterization", "project_gaussians", "quat_scale_to_covar", "spherical_harmonics",
           "isect_tiles", "rasterize_to_pixels"]
