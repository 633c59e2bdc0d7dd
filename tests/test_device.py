"""Where a generation runs: the CPU thread count and how busy the cores are."""

from __future__ import annotations

import os

import pytest
import torch


def test_cpu_threads_follow_the_free_cores(monkeypatch):
    import gsdi.device
    from gsdi.device import choose_cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(gsdi.device, "busy_cores", lambda: 1.6)
    threads, note = choose_cpu_threads()
    assert threads == 1 and "OMP_NUM_THREADS" in note and "--set cpu_threads" in note
    monkeypatch.setattr(gsdi.device, "busy_cores", lambda: 0.2)
    assert choose_cpu_threads() == (2, None)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_cpu_threads() == (3, None)


def test_busy_cores_reads_the_non_idle_share_of_the_window(monkeypatch):
    """From two /proc/stat samples: the share of CPU time that was not idle (idle + iowait) over the
    window, times the cores. Given samples, so that the machine's own load cannot change the answer."""
    from gsdi.device import busy_cores

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # cpu  user nice system idle iowait irq softirq
    lines = iter(["cpu  100 0 50 800 50 0 0 0", "cpu  175 0 75 875 75 0 0 0"])  # +100 busy, +100 idle of 200
    assert busy_cores(window=0, read_stat=lambda: next(lines)) == pytest.approx(1.0)
    lines = iter(["cpu  100 0 50 800 50 0 0 0", "cpu  100 0 50 1000 50 0 0 0"])  # all idle
    assert busy_cores(window=0, read_stat=lambda: next(lines)) == 0.0
    lines = iter(["cpu  100 0 50 800 50 0 0 0"] * 2)  # no ticks passed
    assert busy_cores(window=0, read_stat=lambda: next(lines)) == 0.0
    real = busy_cores(window=0.05)  # this machine's: whatever it is, a number of cores
    assert 0.0 <= real <= 2.0 + 1e-6


def test_a_cpu_run_records_the_threads_it_used(tmp_path):
    import json

    import gsdi

    out, before = tmp_path / "run", torch.get_num_threads()
    try:
        gsdi.generate("a red castle", out=out, steps=2, device="cpu", progress=False, turntable_frames=0, cpu_threads=1)
        assert json.loads((out / "metrics.json").read_text())["cpu_threads"] == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
