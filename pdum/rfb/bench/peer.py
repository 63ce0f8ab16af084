"""Peer comparison with libvncserver, publish-to-client latency, and scaling with client count.

Why it is built this way:

* **Same frames.** The harness renders the frame sequence once and writes it to a file; our
  server (:mod:`pdum.rfb.bench.pdum_server`) and the C server (``benchmarks/peer/lvs_server.c``)
  both load that file, so they serve byte-identical frames.
* **Every frame delivered.** Both servers run the same lock-step: frame k+1 is published only
  when every client has been sent frame k and has asked for more. The client
  (``benchmarks/peer/lvc_client.c``, libvncclient) CRCs its framebuffer after every update and
  the harness checks that it held exactly frames 0..N-1, in order, one update each.
* **Same client, same settings.** Both servers are driven by the same libvncclient binary,
  which asks for exactly one encoding, 32 bpp, and no quality level (so libvncserver's Tight is
  lossless too).
* **CPU measured the same way.** Each server is its own process and reads its own
  ``getrusage(RUSAGE_SELF)`` (user + system, all threads) around the lock-step run; start-up
  (Python's imports, loading the frame file, the handshake) is outside the window. Bytes on the
  wire are counted by the client (every byte libvncclient reads from the socket).
* **Built at run time.** The two C programs are compiled with gcc into a temporary directory on
  every run; no binaries are committed. They need a source checkout (the C files live in
  ``benchmarks/peer/``) and Debian's ``libvncserver-dev``; without them these sections report
  why they were skipped.

Everything listens on 127.0.0.1 only, and every process stops by itself (after the last frame,
or after its own timeout).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from .scenes import SCENES

#: label -> (libvncclient encoding string, compress level the client sends)
PEER_ENCODINGS: dict[str, tuple[str, int]] = {
    "Tight": ("tight", 6),
    "Tight CL1": ("tight", 1),
    "Zlib": ("zlib", 6),
    "ZRLE": ("zrle", 6),
    "Hextile": ("hextile", 6),
    "Raw": ("raw", 6),
}

SERVERS = ("pdum", "libvncserver")


class Skip(Exception):
    """A section cannot run on this machine (no gcc, no libvncserver, no source checkout)."""


def peer_sources() -> Path | None:
    """``benchmarks/peer`` of the source checkout this package was imported from, if any."""
    candidate = Path(__file__).resolve().parents[3] / "benchmarks" / "peer"
    return candidate if (candidate / "lvs_server.c").is_file() else None


@dataclass(frozen=True)
class Programs:
    server: Path
    client: Path
    floor_client: Path  # the scaling sections' floors (floor_server.py and floor_server.c)
    floor_server: Path  # the C floor


def build(workdir: Path) -> Programs:
    """Compile the C server and client into ``workdir`` (raises :class:`Skip` when impossible)."""
    src = peer_sources()
    if src is None:
        raise Skip("benchmarks/peer/*.c not found: the peer benchmarks need a source checkout")
    gcc = shutil.which("gcc")
    if gcc is None:
        raise Skip("gcc not found")
    programs = Programs(
        workdir / "lvs_server", workdir / "lvc_client", workdir / "floor_client", workdir / "floor_server"
    )
    for exe, source, libs in (
        (programs.server, src / "lvs_server.c", ["-lvncserver"]),
        (programs.client, src / "lvc_client.c", ["-lvncclient", "-lz"]),
        (programs.floor_client, src / "floor_client.c", []),
        (programs.floor_server, src / "floor_server.c", []),
    ):
        done = subprocess.run(
            [gcc, "-O2", "-Wall", "-o", str(exe), str(source), *libs], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise Skip(f"cannot build {source.name} (is libvncserver-dev installed?): {done.stderr.strip()}")
    return programs


def stop_processes(procs: Sequence[subprocess.Popen[Any]]) -> None:
    """Kill whichever of a run's processes still run, reap them all and close their pipes."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_frames(path: Path, scene: str, width: int, height: int, nframes: int) -> list[int]:
    """Write ``nframes`` RGB frames of ``scene`` to ``path``; return each frame's CRC-32."""
    render = SCENES[scene]
    crcs: list[int] = []
    with path.open("wb") as f:
        for t in range(nframes):
            frame = np.ascontiguousarray(render(width, height, t))
            data = frame.tobytes()
            f.write(data)
            crcs.append(zlib.crc32(data))
    return crcs


def match_frames(client_crcs: Sequence[int], expected: Sequence[int]) -> list[int] | None:
    """Index of the update after which the client held each expected frame (in order), or None."""
    found: list[int] = []
    j = 0
    for crc in expected:
        while j < len(client_crcs) and client_crcs[j] != crc:
            j += 1
        if j == len(client_crcs):
            return None
        found.append(j)
        j += 1
    return found


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile of ``values`` (NaN for none): the benchmark's p95 / p99."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


@dataclass
class Run:
    """One server serving one frame sequence to ``clients`` clients in one encoding."""

    server: str
    scene: str
    width: int
    height: int
    encoding: str
    clients: int
    frames: int = 0
    cpu_ms_per_frame: float = float("nan")
    sys_ms_per_frame: float = float("nan")  # the kernel's share of cpu_ms_per_frame (socket I/O, ...)
    faults_per_frame: float = float("nan")  # minor page faults (fresh memory touched) per frame
    wall_ms_per_frame: float = float("nan")
    bytes_per_frame: float = float("nan")  # what client 0 received, per frame
    server_bytes_per_frame: float = float("nan")  # what the server says it sent, per client-frame
    latency_ms_median: float = float("nan")  # publish -> client 0 finished decoding
    latency_ms_p95: float = float("nan")
    latency_ms_p99: float = float("nan")
    verified: bool = False  # client 0 held exactly frames 0..N-1, one update each
    min_updates: int = 0  # fewest updates any client got during the run
    cpu_total_s: float = float("nan")  # whole server process, start-up included (wait4)
    error: str | None = None
    repeats: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _server_command(kind: str, programs: Programs, args: list[str]) -> list[str]:
    if kind == "libvncserver":
        return [str(programs.server), *args]
    return [sys.executable, "-m", "pdum.rfb.bench.pdum_server", *args]


def run_once(
    kind: str,
    programs: Programs,
    workdir: Path,
    frame_file: Path,
    crcs: Sequence[int],
    scene: str,
    width: int,
    height: int,
    encoding: str,
    clients: int,
    timeout: int,
    fps: float = 0.0,
) -> Run:
    """Start one server and ``clients`` clients, wait for all of them, return the measurements.
    ``fps``: 0 for the lock-step run, else the rate at which the server publishes on its own clock."""
    run = Run(kind, scene, width, height, encoding, clients)
    enc_string, compress = PEER_ENCODINGS[encoding]
    port = free_port()
    nframes = len(crcs)
    args = [str(port), str(width), str(height), str(nframes), str(frame_file), str(clients), str(timeout)]
    if fps > 0:
        args.append(str(fps))
    errlog = (workdir / f"{kind}-server.err").open("w+")
    server = subprocess.Popen(
        _server_command(kind, programs, args), stdout=subprocess.PIPE, stderr=errlog, text=True
    )
    assert server.stdout is not None
    procs: list[subprocess.Popen[str]] = []
    try:
        ready = server.stdout.readline()
        if not ready.startswith("READY"):
            raise RuntimeError(f"server did not start: {ready!r}")
        for i in range(clients):
            cmd = [str(programs.client), "127.0.0.1", str(port), enc_string, str(compress)]
            cmd += ["1" if i == 0 else "0", str(timeout + 5)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        out = server.stdout.read()
        _, status, usage = os.wait4(server.pid, 0)
        server.returncode = os.waitstatus_to_exitcode(status)
        run.cpu_total_s = usage.ru_utime + usage.ru_stime
        client_out = [p.communicate(timeout=timeout + 10)[0] for p in procs]
        if server.returncode != 0 or not out.strip():
            errlog.seek(0)
            raise RuntimeError(f"server exited with {server.returncode}: {errlog.read()[-500:]}")
        result = json.loads(out.strip().splitlines()[-1])
        reports = [json.loads(text) for text in client_out if text.strip()]
        if len(reports) != clients:
            raise RuntimeError(f"{clients - len(reports)} of {clients} clients printed no report")
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        run.error = str(exc)
        return run
    finally:
        stop_processes([*procs, server])
        errlog.close()
    frames = int(result["frames"])
    run.frames = frames
    run.cpu_ms_per_frame = result["cpu_s"] / frames * 1000.0
    run.sys_ms_per_frame = result["cpu_sys_s"] / frames * 1000.0
    run.faults_per_frame = result["minor_faults"] / frames
    run.wall_ms_per_frame = result["wall_s"] / frames * 1000.0
    run.server_bytes_per_frame = result["bytes_sent"] / (frames * clients)
    first = reports[0]
    found = match_frames(first["crc"], crcs)
    if found is not None:
        run.verified = found[-1] - found[0] == frames and found[-1] == first["updates"] - 1
        run.bytes_per_frame = (first["bytes"][found[-1]] - first["bytes"][found[0]]) / frames
        latencies = [(first["t_ns"][found[k]] - result["publish_ns"][k - 1]) / 1e6 for k in range(1, nframes)]
        run.latency_ms_median = statistics.median(latencies)
        run.latency_ms_p95 = percentile(latencies, 95)
        run.latency_ms_p99 = percentile(latencies, 99)
    else:
        run.error = "client 0 never held some frame of the sequence"
    run.min_updates = min(int(r["updates"]) for r in reports)
    return run


class _Measured(Protocol):
    error: str | None
    cpu_ms_per_frame: float


_R = TypeVar("_R", bound=_Measured)


def median_by_cpu(runs: Sequence[_R]) -> _R:
    """The run with the median CPU per frame among those without an error (else the first)."""
    good = sorted((r for r in runs if r.error is None), key=lambda r: r.cpu_ms_per_frame)
    return good[len(good) // 2] if good else runs[0]


def _median_run(runs: list[Run]) -> Run:
    """The repetition with the median server CPU, carrying every repetition's key numbers."""
    chosen = median_by_cpu(runs)
    if chosen.error is not None:
        return chosen
    chosen.repeats = [
        {"cpu_ms_per_frame": r.cpu_ms_per_frame, "wall_ms_per_frame": r.wall_ms_per_frame} for r in runs
    ]
    return chosen


@dataclass(frozen=True)
class Case:
    scene: str
    width: int
    height: int
    nframes: int
    encodings: tuple[str, ...]
    clients: tuple[int, ...] = (1,)
    fps: float = 0.0  # 0: lock-step; else the servers publish on their own clock at this rate


def run_cases(
    programs: Programs,
    workdir: Path,
    cases: Sequence[Case],
    *,
    repeats: int,
    progress: Callable[[str], None] | None = None,
) -> list[Run]:
    """Both servers for every case, encoding and client count, ``repeats`` times each (median);
    ``programs`` from :func:`build`, frame files written to ``workdir``."""
    results: list[Run] = []
    for case in cases:
        frame_file = workdir / "frames.rgb"
        crcs = write_frames(frame_file, case.scene, case.width, case.height, case.nframes)
        timeout = 60 + case.nframes * max(case.clients) // 4
        for encoding in case.encodings:
            for clients in case.clients:
                # The servers take turns, so a slow spell of the machine (other tenants, the
                # kernel's housekeeping) hits both sides of a ratio rather than one.
                runs: dict[str, list[Run]] = {kind: [] for kind in SERVERS}
                for _ in range(repeats):
                    for kind in SERVERS:
                        runs[kind].append(
                            run_once(kind, programs, workdir, frame_file, crcs, case.scene, case.width,
                                     case.height, encoding, clients, timeout, case.fps)
                        )  # fmt: skip
                for kind in SERVERS:
                    run = _median_run(runs[kind])
                    results.append(run)
                    if progress is not None:
                        status = run.error or ("ok" if run.verified else "NOT VERIFIED")
                        progress(
                            f"{kind:12} {case.scene} {case.width}x{case.height} {encoding:9} "
                            f"x{clients:<2} cpu {run.cpu_ms_per_frame:7.3f} ms/frame "
                            f"{run.bytes_per_frame:9.0f} B/frame  {status}"
                        )
        frame_file.unlink()
    return results


#: The floors' servers: the asyncio one (``floor_server.py``) and its C twin (``floor_server.c``).
FLOOR_SERVERS = ("asyncio", "C")


@dataclass
class FloorRun:
    """A floor server (``server``: one of :data:`FLOOR_SERVERS`) with ``clients`` floor clients."""

    clients: int
    update_bytes: int
    fps: float = 0.0  # 0: lock-step; else written on a clock at this rate
    server: str = "asyncio"
    frames: int = 0
    cpu_ms_per_frame: float = float("nan")
    sys_ms_per_frame: float = float("nan")
    error: str | None = None
    repeats: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_floor(
    programs: Programs,
    clients: int,
    nframes: int,
    update_bytes: int,
    *,
    repeats: int,
    timeout: int = 60,
    fps: float = 0.0,
    server_kind: str = "asyncio",
) -> FloorRun:
    """A floor server (``server_kind``, see :data:`FLOOR_SERVERS`) and ``clients`` floor clients,
    ``repeats`` times (median by CPU); ``fps`` as in :func:`run_once`."""
    command = {
        "asyncio": [sys.executable, "-m", "pdum.rfb.bench.floor_server"],
        "C": [str(programs.floor_server)],
    }[server_kind]
    runs: list[FloorRun] = []
    for _ in range(repeats):
        run = FloorRun(clients, update_bytes, fps, server_kind)
        port = free_port()
        args = [str(port), str(clients), str(nframes), str(update_bytes), str(timeout)]
        if fps > 0:
            args.append(str(fps))
        server = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert server.stdout is not None
        procs: list[subprocess.Popen[Any]] = []
        try:
            if not server.stdout.readline().startswith("READY"):
                raise RuntimeError("floor server did not start")
            cmd = [str(programs.floor_client), str(port), str(nframes), str(update_bytes), str(timeout + 5)]
            procs = [subprocess.Popen(cmd) for _ in range(clients)]
            out, err = server.communicate(timeout=timeout + 10)
            if server.returncode != 0 or not out.strip():
                raise RuntimeError(f"floor server exited with {server.returncode}: {err.strip()[-300:]}")
            result = json.loads(out.strip().splitlines()[-1])
            run.frames = int(result["frames"])
            run.cpu_ms_per_frame = result["cpu_s"] / run.frames * 1000.0
            run.sys_ms_per_frame = result["cpu_sys_s"] / run.frames * 1000.0
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            run.error = str(exc)
        finally:
            stop_processes([*procs, server])
        runs.append(run)
    chosen = median_by_cpu(runs)
    chosen.repeats = [r.cpu_ms_per_frame for r in runs]
    return chosen


def floor_clients(quick: bool) -> tuple[int, ...]:
    return (1, 16) if quick else (1, 4, 16)


def peer_cases(quick: bool) -> list[Case]:
    encodings: tuple[str, ...] = ("Tight", "Zlib", "ZRLE", "Hextile", "Raw")
    if quick:
        return [Case("seed_scene", 320, 240, 40, encodings), Case("bouncing_box", 320, 240, 40, encodings)]
    encodings = ("Tight", "Tight CL1", *encodings[1:])
    return [Case("seed_scene", 320, 240, 200, encodings), Case("bouncing_box", 320, 240, 200, encodings)]


def latency_cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case("seed_scene", 320, 240, 40, ("Tight", "Raw")),
            Case("bouncing_box", 1280, 720, 20, ("Tight", "Raw")),
        ]
    encodings = ("Tight", "Zlib", "ZRLE", "Raw")
    return [
        Case("seed_scene", 320, 240, 301, encodings),
        Case("seed_scene", 1280, 720, 101, encodings),
        Case("bouncing_box", 1280, 720, 101, encodings),
    ]


def scaling_cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("seed_scene", 320, 240, 30, ("Tight",), (1, 4, 16))]
    return [Case("seed_scene", 320, 240, 120, ("Tight", "ZRLE", "Raw"), (1, 4, 16))]


#: The rate of the paced scaling section: a notebook's ``publish_loop`` at 30 frames/s.
PACED_FPS = 30.0


def paced_cases(quick: bool) -> list[Case]:
    """Scaling at a real frame rate: the servers publish on their own clock, idle between frames."""
    if quick:
        return [Case("seed_scene", 320, 240, 31, ("Tight",), (1, 16), PACED_FPS)]
    return [Case("seed_scene", 320, 240, 91, ("Tight", "ZRLE", "Raw"), (1, 16), PACED_FPS)]
