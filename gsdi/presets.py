"""Named presets: overrides in the dotted form `make_config` takes, on top of GenerateConfig's defaults,
which are the `default` preset (what `gsdi generate` runs with the embedded prior). The figures behind
each choice are in docs/results.md and the research log; comments here name the source only.

- default: SDS, t annealed 980 -> 250 over 1000 steps, no late opacity penalty, the top 40% of
  Gaussians grown at each refinement (research log, 2026-12-01 and 2026-12-02).
- preview: 300 steps at 256^2 renders, within a minute on 2 CPU cores (research log, 2026-12-02).
- short: the default's run compressed into 700 steps (every rate x 1/0.7, densification and opacity
  resets at 0.7 of the default's intervals); under 4 minutes on 2 CPU cores (research log, 2026-12-05
  (short)).
- refined: three stages, what `auto` runs with the latent world prior: the default's score distillation
  compressed into 400 steps (every rate x 1.25, densification at 0.8 of the default's intervals until
  step 280; the opacity reset at step 400 falls after that and never fires), 600 refinement steps (a
  target refreshed every 25), 200 polish steps; nearer the world than `short`, the car 3 min 33 s and
  a red castle 4 min 3 s on 2 CPU cores (research log, 2026-12-05 (refined)).
- long: the 1500-step recipe the 3DGS peers run on Stable Diffusion (unmeasured there).
- stable-diffusion: what a Stable Diffusion prior runs when no preset is named; it cannot be measured
  here (no SD weights can be downloaded on gsdi's test machines), so each value comes from the SDI
  paper's official 3D configuration and code, or from the 3DGS peers, as its comment says.
"""

from __future__ import annotations

from typing import Any

STABLE_DIFFUSION: dict[str, Any] = {
    "guidance.method": "sdi",  # the paper's method
    "guidance.inversion_start": 0,  # SDI's official code: DDIM inversion from the clean render
    "guidance.inversion_cfg_scale": -7.5,  # its 3D config: the inversion leans away from the prompt
    "guidance.inversion_eta": 0.3,  # its 3D config: stochastic inversion
    "guidance.inversion_steps": 10,  # its 3D config: K = 10 grid points
    "guidance.t_schedule": "anneal",  # its 3D config: t falls linearly ...
    "guidance.p_max": 0.98,  # ... from 980 ...
    "guidance.p_min": 0.25,  # ... to 250
    "guidance.cfg_scale": 7.5,  # its 3D config ...
    "guidance.cfg_form": "reference",  # ... in its code's form (standard with Perp-Neg, eps_c + s (eps_c - eps_u) without)
    "guidance.prediction_timestep": "scheduled",  # its code: the sample inverted to t' is predicted at t
    "guidance.perp_neg": True,  # its 3D config, against the Janus problem
    "steps": 1200,  # the 3DGS peers' range (docs/results.md, Defaults per prior)
    "render.max_resolution": 512,  # SD 2.1 base's native size, as the paper renders
    "scene.num_points": 4096,  # gsdi's long preset; the peers start from 1k-100k points
    "densify.refine_start_iter": 100,  # gsplat's DefaultStrategy and the peers
    "densify.grow_quantile": 0.8,  # gsdi's growth before the embedded prior's 0.6 was measured (unmeasured here)
    "densify.max_gaussians": 100_000,
}
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "stable-diffusion": STABLE_DIFFUSION,
    "preview": {"steps": 300, "render.max_resolution": 256},
    "short": {"steps": 700, "optim.rate_scale": 1 / 0.7, "densify.refine_start_iter": 35, "densify.refine_every": 70,
              "densify.reset_every": 350},
    "refined": {"steps": 400, "optim.rate_scale": 1.25, "densify.refine_start_iter": 40, "densify.refine_every": 80,
                "densify.reset_every": 400, "refine.steps": 600, "refine.refresh_every": 25, "refine.polish_steps": 200},
    "long": {"steps": 1500, "scene.num_points": 4096, "densify.refine_start_iter": 100, "densify.max_gaussians": 100_000},
}

AUTO_PRESETS: dict[str, str] = {"world": "refined"}  # `--preset auto` by prior name; other world priors: default

# Wall seconds of `gsdi generate "a red castle" --prior PRIOR --preset P [--guidance sdi]` on 2 CPU cores
# (README, What to expect), by (prior, preset, guidance method): what a CPU run announces at its start.
CPU_SECONDS: dict[tuple[str, str, str], float] = {
    ("embedded", "preview", "sds"): 50, ("embedded", "default", "sds"): 115, ("embedded", "default", "sdi"): 320,
    ("embedded", "long", "sds"): 347,
    ("world", "default", "sds"): 259, ("world", "preview", "sds"): 74,  # "a blue car with yellow stripes", 2026-12-04, the 8-channel prior
    ("world", "short", "sds"): 221,  # the same car, 2026-12-05, on a slower 2-core EPYC (its default took 324 s there)
    ("world", "refined", "sds"): 213,  # the same car on the same slower EPYC, 2026-12-05, all three stages
}
