"""One generation's state and its step: text -> 3D Gaussians by score distillation (SDI or SDS).

Read `Generation.advance` top to bottom for one step: sample cameras -> render -> encode -> pick t ->
guidance loss (+ the late opacity penalty) -> backward -> (skip if not finite) -> optimizer step ->
densify and remove faint Gaussians -> (log). Each line calls a module that does one job. Then
`refine_advance` for config.refine.steps: one view's render pulled to its target (gsdi/guidance/refine.py);
then, for refine.polish_steps, the same step at low t with fresh optimisers and no densification.
The loop, checkpoints and outputs are gsdi/run.py's; `state_dict` / `load_state_dict` are what a
checkpoint holds (gsdi/checkpoint.py writes and reads the file).
"""

from __future__ import annotations

from typing import Any

import torch

from gsdi.config import GenerateConfig
from gsdi.device import choose_cpu_threads, resolve_device
from gsdi.errors import GsdiError

MAX_BAD_STEPS_IN_A_ROW = 10


class NonFiniteError(GsdiError):
    """The optimisation keeps producing NaN/inf; raised after MAX_BAD_STEPS_IN_A_ROW skipped steps."""


class Generation:
    """The state of one generation between steps, and the step itself.

    `advance()` runs one step; every `log_every` steps it returns a record (the only point the loop
    reads values back from the device). `prior` may be passed in to share one between generations.
    """

    def __init__(self, config: GenerateConfig, prior=None, cpu_threads: int | None = None):
        from gsdi.densify import Densifier
        from gsdi.guidance import Rng
        from gsdi.priors import load_prior
        from gsdi.prompts import VIEW_WORDS, view_prompts
        from gsdi.render import resolve_backend
        from gsdi.scene import init_params, make_optimizers

        self.config = config
        self.device = resolve_device(config.device)
        self.threads_note, self.cpu_threads = None, cpu_threads or config.cpu_threads or None  # the config is not written
        if self.device.type == "cpu":
            if self.cpu_threads is None:
                self.cpu_threads, self.threads_note = choose_cpu_threads()
            torch.set_num_threads(self.cpu_threads)
        self.backend = resolve_backend(config.render.backend, self.device)
        self.rng = Rng.seeded(config.seed, self.device)
        torch.manual_seed(config.seed)  # gsplat's densification samples from torch's global generators
        self.prior = prior if prior is not None else load_prior(config.prior, self.device, config.cuda_graphs, config.prior_encoder)
        prompts = [config.prompt, config.negative_prompt]
        if config.camera.view_dependent_prompt:
            prompts += view_prompts(config.prompt, VIEW_WORDS)
        self.prior.text_embeddings(prompts)  # a prompt the prior cannot read fails now, before any output
        self.size = min(self.prior.image_size, config.render.max_resolution)
        self.params = init_params(config.scene, self.rng.host, self.device)
        self.optimizers = make_optimizers(self.params, config.optim)
        self.densifier = Densifier(config.densify, config.steps, config.scene.init_radius, self.params, self.optimizers)
        self.step = 0
        self.seconds = 0.0  # time spent in steps (over every resumed part)
        self.history: list[dict[str, Any]] = []
        self.skipped_steps = 0  # steps whose loss or gradient was not finite (not applied)
        self.bad_in_a_row = 0
        self.held: dict[str, Any] | None = None  # the current level's views, t and noise (guidance.hold_steps > 1)
        self.buffer = None  # the refinement's views and targets (gsdi.guidance.refine.Buffer)

    @property
    def num_gaussians(self) -> int:
        return self.params["means"].shape[0]

    def advance(self) -> dict[str, Any] | None:
        from gsdi.cameras import orbit_cameras, sample_orbits
        from gsdi.guidance import guidance_loss, kept_noise, run_timestep
        from gsdi.prompts import perp_neg_text, text_cond
        from gsdi.render import render, to_prior_input
        from gsdi.scene import make_optimizers, update_run_learning_rates

        config, cam, gcfg, prior, step = self.config, self.config.camera, self.config.guidance, self.prior, self.step
        if config.steps <= step < config.polish_start:
            return self.refine_advance()
        if step == config.polish_start:  # the polish's first step (RefineConfig.polish_steps)
            self.optimizers = make_optimizers(self.params, config.optim)
        B, T = cam.views_per_step, prior.alphas_cumprod.shape[0]
        held = self.held if step % gcfg.hold_steps else None  # a level's views, t and noise (guidance.hold_steps)
        if held is None:
            cameras = sample_orbits(B, self.size, self.size, self.rng.host, cam.radius_range, cam.fov_range, cam.elevation_range)
        else:
            cameras = orbit_cameras(*held["orbit"], self.size, self.size)
        rendered = render(self.params, cameras, config.render.background, self.backend)
        self.densifier.pre_backward(self.params, self.optimizers, step, rendered.meta)
        x0 = prior.encode(to_prior_input(rendered.rgb, prior.image_size), generator=self.rng.device)
        if gcfg.perp_neg:
            text = perp_neg_text(prior, config.prompt, config.negative_prompt, cameras.azimuth, cameras.elevation)
        else:
            words = cameras.view_words() if cam.view_dependent_prompt else None
            text = text_cond(prior, config.prompt, config.negative_prompt, words, B)
        t = held["t"] if held else run_timestep(step, config, T, self.rng)
        guided = guidance_loss(prior, x0, text, t, gcfg, self.rng, kept_noise(held["noise"], held["t_noisy"]) if held else None)
        if held is None and gcfg.hold_steps > 1:
            orbit = (cameras.azimuth, cameras.elevation, cameras.distance, cameras.fov)
            self.held = {"orbit": orbit, "t": t, "t_noisy": guided.t_noisy, "noise": guided.noise}
        x0.retain_grad()
        loss = guided.loss + self.densifier.opacity_penalty(self.params, step)
        if not self._apply(loss):
            return None
        update_run_learning_rates(self.optimizers, step + 1, config)
        self.densifier.post_backward(self.params, self.optimizers, step, rendered.meta)
        self.densifier.clean(self.params, self.optimizers, step)
        if self.step % config.log_every and self.step != config.total_steps:
            return None
        return {"step": self.step, "t": guided.t, "t_noisy": guided.t_noisy, "loss": guided.loss.item(),
                "grad_x0": x0.grad.norm().item(), "gaussians": self.num_gaussians}

    def refine_advance(self) -> dict[str, Any] | None:
        """One refinement step (config.RefineConfig): fresh optimisers and the buffer at the first, one view's
        target made anew every refresh_every; then one buffer view's render pulled to its target (pixel MSE)."""
        from gsdi.guidance.refine import Buffer, draw_orbit, make_targets, refine_t
        from gsdi.render import render, to_prior_input
        from gsdi.scene import make_optimizers

        config, rcfg = self.config, self.config.refine
        k, N = self.step - config.steps, rcfg.views
        if k == 0:
            self.optimizers = make_optimizers(self.params, config.optim, rcfg.lr_scale)
            self.buffer = Buffer(draw_orbit(config.camera, N, self.size, self.rng.host), torch.empty(0))
        if k == 0 or k % rcfg.refresh_every == 0:
            index = torch.arange(N) if k == 0 else torch.tensor([(k // rcfg.refresh_every - 1) % N])
            targets = make_targets(self.prior, self.params, self.buffer.cameras(self.size, index), config,
                                   refine_t(k, rcfg), self.backend, self.rng.device)
            self.buffer.targets = targets if k == 0 else self.buffer.targets.index_copy(0, index.to(targets.device), targets)
        j = torch.randint(N, (1,), generator=self.rng.host)
        rendered = render(self.params, self.buffer.cameras(self.size, j), config.render.background, self.backend)
        loss = torch.mean((to_prior_input(rendered.rgb, self.prior.image_size) - self.buffer.targets[j]) ** 2)
        if not self._apply(loss) or (self.step % config.log_every and self.step != config.total_steps):
            return None
        t = refine_t(k, rcfg)
        return {"step": self.step, "t": t, "t_noisy": t, "loss": loss.item(), "grad_x0": None, "gaussians": self.num_gaussians}

    def _apply(self, loss: torch.Tensor) -> bool:
        """Backward and one optimiser step, skipped when the loss or a gradient is not finite
        (NonFiniteError after MAX_BAD_STEPS_IN_A_ROW such steps in a row). Whether it was applied."""
        loss.backward()
        self.step += 1
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        finite = bool(torch.stack([torch.isfinite(x).all() for x in [loss, *grads]]).all())  # one host sync a step
        if finite:
            for optimizer in self.optimizers.values():
                optimizer.step()
        self.optimizers_zero_grad()
        self.bad_in_a_row, self.skipped_steps = (0, self.skipped_steps) if finite else (self.bad_in_a_row + 1, self.skipped_steps + 1)
        if self.bad_in_a_row >= MAX_BAD_STEPS_IN_A_ROW:
            raise NonFiniteError(
                f"the loss or its gradient was not finite {self.bad_in_a_row} steps in a row (last at step {self.step}); "
                "lower the learning rates or the CFG scale, or try another --seed")
        return finite

    def optimizers_zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, JSON-able scalars) of everything a step depends on: the Gaussians, each Adam's moments
        and step count, the densifier's state, the random generators (gsdi's and torch's global ones,
        which gsplat's densification draws from), a held level, the refinement's buffer, the step, the
        config and the logged history."""
        from gsdi.scene import optimizer_tensors

        densify_tensors, densify_meta = self.densifier.state_dict()
        tensors = {**{f"params.{k}": v.detach() for k, v in self.params.items()}, **optimizer_tensors(self.optimizers),
                   **densify_tensors, **self.rng.state(self.device), **(self.buffer.tensors() if self.buffer else {})}
        if self.held is not None:
            tensors.update({f"held.orbit{i}": v for i, v in enumerate(self.held["orbit"])}, **{"held.noise": self.held["noise"]})
        meta = {"step": self.step, "config": self.config.to_dict(), **densify_meta, "skipped_steps": self.skipped_steps,
                "cpu_threads": self.cpu_threads, "history": self.history, "seconds": self.seconds,
                "held": {k: self.held[k] for k in ("t", "t_noisy")} if self.held is not None else None}
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Put a state_dict into a Generation built from the same config."""
        from gsdi.densify import Densifier
        from gsdi.guidance.refine import Buffer
        from gsdi.scene import load_optimizer_tensors, make_optimizers, update_run_learning_rates

        device, config = self.device, self.config
        self.step = int(meta["step"])
        refining = config.steps < self.step <= config.polish_start  # the refinement's optimisers (the polish makes its own)
        self.params = torch.nn.ParameterDict({key[len("params."):]: torch.nn.Parameter(value.to(device))
                                              for key, value in tensors.items() if key.startswith("params.")})
        self.optimizers = make_optimizers(self.params, config.optim, config.refine.lr_scale if refining else 1.0)
        load_optimizer_tensors(self.optimizers, tensors, device)
        self.densifier = Densifier(config.densify, config.steps, config.scene.init_radius, self.params, self.optimizers)
        self.densifier.load_state_dict(tensors, meta, device)
        self.buffer = Buffer.from_tensors(tensors, device)
        if meta.get("held"):
            self.held = {**meta["held"], "orbit": tuple(tensors[f"held.orbit{i}"] for i in range(4)), "noise": tensors["held.noise"].to(device)}
        self.rng.load_state(tensors, device)
        self.skipped_steps = int(meta.get("skipped_steps", 0))
        self.history, self.seconds = list(meta.get("history", [])), float(meta.get("seconds", 0.0))
        if not refining:  # the refinement's rates stay as made
            update_run_learning_rates(self.optimizers, self.step, config)
