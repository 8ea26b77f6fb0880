"""CPU use and peak memory of the benchmark's processes, sampled with psutil.

A background thread samples every ``period_s`` each watched process and, for the engine, its child
processes as they appear (the capture process; multiprocessing helpers): CPU seconds
(user + system) and RSS. CPU % of a process = its CPU seconds between its first and last sample
divided by the wall time between them (100 % = one core busy), and the same over the streaming
window only (first capture → last publish, so start-up and model loading are left out); peak RSS
is the largest RSS seen.
A process's last sample is at most ``period_s`` before it exited.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class ProcSamples:
    role: str
    pid: int
    name: str = ""
    t_first: float | None = None
    t_last: float | None = None
    cpu_first: float = 0.0
    cpu_last: float = 0.0
    peak_rss: int = 0
    threads_max: int = 0
    series: list[tuple[float, float]] = field(default_factory=list)  # (monotonic s, CPU s)

    def add(self, t: float, cpu: float, rss: int, threads: int) -> None:
        if self.t_first is None:
            self.t_first, self.cpu_first = t, cpu
        self.t_last, self.cpu_last = t, cpu
        self.peak_rss = max(self.peak_rss, rss)
        self.threads_max = max(self.threads_max, threads)
        self.series.append((t, cpu))

    def window_cpu_percent(self, t0: float, t1: float) -> float | None:
        """CPU % between the samples closest to [t0, t1] (monotonic seconds), e.g. while frames flowed."""
        inside = [(t, c) for t, c in self.series if t0 <= t <= t1]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        return round(100.0 * (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]), 1)

    def summary(self, window: tuple[float, float] | None = None) -> dict[str, Any]:
        wall = (self.t_last - self.t_first) if self.t_first is not None and self.t_last is not None else 0.0
        cpu_s = self.cpu_last - self.cpu_first
        return {
            "role": self.role, "pid": self.pid, "name": self.name,
            "wall_s": round(wall, 3), "cpu_s": round(cpu_s, 3),
            "cpu_percent": round(100.0 * cpu_s / wall, 1) if wall > 0 else None,
            "cpu_percent_streaming": self.window_cpu_percent(*window) if window else None,
            "cpu_s_total": round(self.cpu_last, 3),
            "peak_rss_mb": round(self.peak_rss / 2**20, 1), "threads_max": self.threads_max,
        }  # fmt: skip


@dataclass
class ProcessMonitor:
    """Sample watched processes (and the engine's children) in a thread until :meth:`stop`."""

    period_s: float = 0.2
    watched: dict[int, ProcSamples] = field(default_factory=dict)
    _roots: dict[int, str] = field(default_factory=dict)  # pid → role of a process whose children count
    _procs: dict[int, psutil.Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, pid: int, role: str, with_children: bool = False) -> None:
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return
        self._procs[pid] = proc
        self.watched[pid] = ProcSamples(role, pid, _name(proc))
        if with_children:
            self._roots[pid] = role

    def start(self) -> ProcessMonitor:
        self._thread = threading.Thread(target=self._loop, name="procmon", daemon=True)
        self._thread.start()
        return self

    def _sample_once(self) -> None:
        for root, role in list(self._roots.items()):
            proc = self._procs.get(root)
            if proc is None:
                continue
            try:
                children = proc.children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                if child.pid not in self.watched:
                    self._procs[child.pid] = child
                    self.watched[child.pid] = ProcSamples(_child_role(role, child), child.pid, _name(child))
        now = time.monotonic()
        for pid, proc in list(self._procs.items()):
            try:
                with proc.oneshot():
                    ct = proc.cpu_times()
                    rss = proc.memory_info().rss
                    nthreads = proc.num_threads()
            except psutil.Error:
                continue
            self.watched[pid].add(now, ct.user + ct.system, rss, nthreads)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample_once()
            self._stop.wait(self.period_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def summaries(self, window: tuple[float, float] | None = None) -> list[dict[str, Any]]:
        """Per process: CPU % over its whole life and over ``window`` (monotonic s), peak RSS, threads."""
        return [s.summary(window) for s in self.watched.values() if s.t_first is not None]


def _name(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline()[:4])[:120] or proc.name()
    except psutil.Error:
        return "?"


def _child_role(parent_role: str, child: psutil.Process) -> str:
    try:
        cmd = " ".join(child.cmdline())
    except psutil.Error:
        cmd = ""
    if "resource_tracker" in cmd:
        return f"{parent_role}:resource-tracker"
    if "multiprocessing" in cmd or "spawn" in cmd:
        return f"{parent_role}:capture"
    return f"{parent_role}:child"
