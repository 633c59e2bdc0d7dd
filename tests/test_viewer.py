"""`gsdi view` as a user sees it: headless Chromium loads the viser page and shows the scene."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from gsdi.formats import write_ply
from gsdi.viewer import splat_arrays


def test_splat_arrays_covariance_matches_rotation_and_scale():
    import torch

    q = torch.nn.functional.normalize(torch.tensor([[0.9, 0.1, -0.3, 0.2]]), dim=1)
    params = {"means": torch.zeros(1, 3), "quats": q, "scales": torch.log(torch.tensor([[0.1, 0.2, 0.3]])),
              "opacities": torch.zeros(1), "sh0": torch.zeros(1, 1, 3)}
    arrays = splat_arrays(params)
    cov = arrays["covariances"][0]
    assert np.allclose(np.sort(np.linalg.eigvalsh(cov)), [0.01, 0.04, 0.09], atol=1e-6)
    assert np.allclose(arrays["rgbs"], 0.5) and np.allclose(arrays["opacities"], 0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
def test_viewer_page_shows_the_scene_in_headless_chromium(tmp_path):
    import torch
    from selenium import webdriver

    g = torch.Generator().manual_seed(0)
    n = 3000
    red = (torch.tensor([0.9, 0.1, 0.1]) - 0.5) / 0.28209479177387814
    write_ply(tmp_path / "red.ply", {
        "means": torch.randn(n, 3, generator=g) * 0.15, "scales": torch.full((n, 3), -3.5),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), "opacities": torch.full((n,), 3.0),
        "sh0": red.repeat(n, 1, 1), "shN": torch.zeros(n, 0, 3)})
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gsdi.cli", "view", str(tmp_path / "red.ply"), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "viewer never listened"
                time.sleep(0.2)
        options = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                    "--window-size=1200,900"):
            options.add_argument(arg)
        options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
        try:
            driver.get(f"http://127.0.0.1:{port}")
            shot = tmp_path / "shot.png"
            for _ in range(30):  # the page connects, receives the splats, sorts them in a worker, draws
                time.sleep(1.0)
                driver.save_screenshot(str(shot))
                import imageio.v3 as iio

                image = iio.imread(shot)[..., :3].astype(int)
                reddish = (image[..., 0] > 120) & (image[..., 1] < 90) & (image[..., 2] < 90)
                if reddish.sum() > 2000:
                    break
        finally:
            driver.quit()
        assert reddish.sum() > 2000, f"only {reddish.sum()} red pixels in the viewer's screenshot ({shot})"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_taken_port_is_reported_as_the_port_the_page_really_has():
    pytest.importorskip("viser", reason="the viewer extra: pip install -e \".[viewer]\"")
    from gsdi.viewer import address, start_server

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = start_server(port)
        try:
            assert address(server) == f"http://127.0.0.1:{server.get_port()}" and server.get_port() != port
        finally:
            server.stop()
