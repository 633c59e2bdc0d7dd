"""No-grad UNet calls replayed from captured CUDA graphs.

An SDI step makes up to K + 1 UNet calls on small batches; eagerly each call costs ~30 ms of
kernel launches on an H100 whatever the batch, while the GPU work is 10-25 ms. Capturing the call
once per input shape and replaying it removes the launch cost (docs/bench_step.md).

`UNetRunner(unet, graphs=True)` is called like the UNet's forward but returns the output tensor.
Graphs are captured lazily per (batch, shapes, dtypes) key into one shared memory pool; on CPU, or
with graphs=False, it calls the UNet eagerly. The returned tensor of a graphed call is the graph's
static output: it is overwritten by the next call, so use it (e.g. `.float()`) before calling again.
"""

from __future__ import annotations

import torch
from torch import Tensor


class UNetRunner:
    def __init__(self, unet, graphs: bool = True, warmup: int = 2):
        self.unet, self.warmup = unet, warmup
        self.graphs = graphs and torch.cuda.is_available() and next(unet.parameters()).is_cuda
        self.captured: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[Tensor, Tensor, Tensor], Tensor]] = {}
        self.pool = None
        self.calls = 0  # UNet calls made (for benchmarks' floor accounting)

    @torch.no_grad()
    def __call__(self, sample: Tensor, timesteps: Tensor, encoder_hidden_states: Tensor) -> Tensor:
        """sample [N, c, h, w], timesteps [N] long, encoder_hidden_states [N, L, D] -> UNet output [N, c, h, w]."""
        assert sample.shape[0] == timesteps.shape[0] == encoder_hidden_states.shape[0], (
            sample.shape, timesteps.shape, encoder_hidden_states.shape)
        self.calls += 1
        if not self.graphs:
            return self._forward(sample, timesteps, encoder_hidden_states)
        key = tuple((tuple(x.shape), x.dtype) for x in (sample, timesteps, encoder_hidden_states))
        if key not in self.captured:
            self.captured[key] = self._capture(sample, timesteps, encoder_hidden_states)
        graph, static_inputs, static_output = self.captured[key]
        for static, value in zip(static_inputs, (sample, timesteps, encoder_hidden_states)):
            static.copy_(value)
        graph.replay()
        return static_output

    def _capture(self, *inputs: Tensor):
        static_inputs = tuple(x.clone() for x in inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up outside the graph (cuDNN/cuBLAS choose their kernels)
            for _ in range(self.warmup):
                self._forward(*static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            static_output = self._forward(*static_inputs)
        return graph, static_inputs, static_output

    def _forward(self, sample: Tensor, timesteps: Tensor, encoder_hidden_states: Tensor) -> Tensor:
        out = self.unet(sample, timesteps, encoder_hidden_states=encoder_hidden_states)
        return out if isinstance(out, Tensor) else out.sample  # gsdi's UNet returns the tensor, diffusers' a wrapper
