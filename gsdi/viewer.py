"""A live splat viewer in the browser (viser): `gsdi view SCENE.ply`, `gsdi generate --view`.

The scene is shown in gsdi's axes (-Y up, front +Z); the initial camera looks at the front from
slightly above, as preview.png's first view does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gsdi.errors import GsdiError


def start_server(port: int = 8080, host: str = "127.0.0.1") -> Any:
    """A viser server with gsdi's up direction and the front camera; GsdiError if viser is missing."""
    try:
        import viser
    except ImportError:
        raise GsdiError("the viewer needs viser, which is not installed; install the viewer extra: "
                        "pip install \".[viewer]\" in gsdi's folder (README, Install)") from None
    try:
        server = viser.ViserServer(host=host, port=port, verbose=False)
    except OSError as error:
        raise GsdiError(f"cannot start the viewer on {host}:{port} ({error.strerror or error}); try --port") from None
    server.scene.set_up_direction("-y")
    server.initial_camera.position = (0.0, -0.8, 2.4)
    server.initial_camera.look_at = (0.0, 0.0, 0.0)
    server.initial_camera.up = (0.0, -1.0, 0.0)
    return server


def address(server: Any) -> str:
    """The page's real address: viser moves to the next free port when the asked one is taken."""
    return f"http://{server.get_host()}:{server.get_port()}"


def splat_arrays(params: dict[str, Tensor]) -> dict[str, Any]:
    """Raw parameters -> viser's centers [N,3], covariances [N,3,3], rgbs [N,3], opacities [N,1] (numpy)."""
    from gsdi.kernels.projection import quat_scale_to_covar
    from gsdi.scene import sh0_to_rgb

    p = {k: v.detach().float().cpu() for k, v in params.items()}
    with torch.no_grad():
        return {
            "centers": p["means"].numpy(),
            "covariances": quat_scale_to_covar(p["quats"], p["scales"].exp()).numpy(),
            "rgbs": sh0_to_rgb(p["sh0"][:, 0]).clamp(0, 1).numpy(),
            "opacities": torch.sigmoid(p["opacities"])[:, None].numpy(),
        }


def show(server: Any, params: dict[str, Tensor]) -> None:
    """Show (or replace) the scene's splats on every connected browser."""
    server.scene.add_gaussian_splats("/scene", **splat_arrays(params))
