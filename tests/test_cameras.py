from __future__ import annotations

import pytest
import torch

from gsdi.cameras import camera_positions, eval_orbits, orbit_cameras, sample_orbits
from gsdi.config import zoomed_fov
from gsdi.prompts import view_word


def test_viewmats_are_rigid_and_look_at_the_origin():
    cams = sample_orbits(16, 64, 48, torch.Generator().manual_seed(0))
    R = cams.viewmats[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(16, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(16), atol=1e-5)
    origin_cam = cams.viewmats[:, :3, 3]  # the origin in camera coordinates
    assert torch.allclose(origin_cam[:, :2], torch.zeros(16, 2), atol=1e-5)
    assert torch.allclose(origin_cam[:, 2], cams.distance, atol=1e-5)
    assert torch.allclose(camera_positions(cams.viewmats).norm(dim=-1), cams.distance, atol=1e-5)
    assert (cams.Ks[:, 0, 2] == 32).all() and (cams.Ks[:, 1, 2] == 24).all()


def test_orbit_parametrisation_and_up():
    cams = orbit_cameras(torch.tensor([0.0, 90.0, 0.0]), torch.tensor([0.0, 0.0, 30.0]),
                         torch.tensor([2.0, 2.0, 2.0]), torch.tensor([60.0] * 3), 32, 32)
    pos = camera_positions(cams.viewmats)
    assert torch.allclose(pos[0], torch.tensor([0.0, 0.0, 2.0]), atol=1e-5)  # front view from +Z
    assert torch.allclose(pos[1], torch.tensor([2.0, 0.0, 0.0]), atol=1e-5)  # azimuth 90 from +X
    assert pos[2, 1] < 0  # positive elevation is above: -Y is up
    up_in_camera = cams.viewmats[:, :3, :3] @ torch.tensor([0.0, -1.0, 0.0])
    assert (up_in_camera[:, 1] < 0).all()  # world up points up the image (camera -y)


@pytest.mark.parametrize("azimuth, elevation, word", [
    (0, 0, "front"), (44, 10, "front"), (-44, 10, "front"), (90, 0, "side"), (-100, 0, "side"),
    (136, 0, "back"), (-180, 0, "back"), (179, 20, "back"), (0, 61, "overhead"), (240, 0, "side"), (200, 0, "back"),
])
def test_view_words(azimuth, elevation, word):
    assert view_word(azimuth, elevation) == word


def test_sampling_is_seeded_and_in_range():
    a = sample_orbits(100, 32, 32, torch.Generator().manual_seed(3))
    b = sample_orbits(100, 32, 32, torch.Generator().manual_seed(3))
    assert torch.equal(a.viewmats, b.viewmats)
    assert a.distance.min() >= 1.5 and a.distance.max() <= 2.0
    assert a.elevation.min() >= -10 and a.elevation.max() <= 45
    assert a.azimuth.min() >= -180 and a.azimuth.max() < 180
    assert a.fov.min() >= 40 and a.fov.max() <= 70


def test_eval_orbits_start_at_the_front():
    cams = eval_orbits(8, 32, 32)
    assert cams.view_words()[0] == "front" and cams.view_words()[4] == "back"
    assert torch.allclose(cams.distance, torch.full((8,), 2.0))


def test_zoomed_fov_shows_objects_zoom_times_larger():
    """The focal length (pixels per unit at unit depth) grows by the zoom at both ends of the range."""
    lo, hi = zoomed_fov((40.0, 70.0), 1.5)
    one = torch.ones(2)
    wide = orbit_cameras(torch.zeros(2), torch.zeros(2), 2 * one, torch.tensor([40.0, 70.0]), 128, 128)
    narrow = orbit_cameras(torch.zeros(2), torch.zeros(2), 2 * one, torch.tensor([lo, hi]), 128, 128)
    assert torch.allclose(narrow.Ks[:, 0, 0] / wide.Ks[:, 0, 0], 1.5 * one, rtol=1e-5)
    assert zoomed_fov((40.0, 70.0), 1.0) == pytest.approx((40.0, 70.0))
