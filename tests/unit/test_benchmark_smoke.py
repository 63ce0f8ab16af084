"""Keeps the benchmark harness from rotting: the encoder section on a tiny frame, no timing checks.

The peer sections need gcc, libvncserver and real sockets; the interop suite covers those
libraries, and ``pdum-rfb benchmark --quick --only peer`` exercises the harness itself.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdum.rfb import bench
from pdum.rfb.bench import encoders, peer, report, websocket_viewers
from pdum.rfb.bench.scenes import SCENES, photo_like
from tests.support import recv_exactly, rfb_handshake


def test_encoder_section_runs_on_a_tiny_frame() -> None:
    rows = encoders.run_encoders(
        sizes=[(40, 30)], scenes=list(SCENES), budget_s=0.0, min_frames=1, max_frames=1, isolate=False
    )
    cases = [case[0] for case in encoders.ENCODER_CASES]
    assert len(rows) == sum(encoders.included(label, scene) for scene in SCENES for label in cases)
    for row in rows:
        assert row.frames == 1
        assert row.bytes_per_frame > 0
        assert row.ms_per_frame >= 0
    raw = [r for r in rows if r.encoder == "Raw"]
    assert all(r.bytes_per_frame == 40 * 30 * 4 + encoders.RECT_HEADER for r in raw)
    text = report.encoders_text(rows)
    assert "| seed_scene | Tight JPEG q8 |" in text
    json.dumps([r.as_dict() for r in rows])


def test_encoder_group_runs_in_a_subprocess() -> None:
    rows = encoders.run_encoders(
        sizes=[(16, 16)], scenes=["seed_scene"], encoders=["Raw"], budget_s=0.0, min_frames=1, max_frames=1
    )
    assert [(r.encoder, r.bytes_per_frame) for r in rows] == [("Raw", 16 * 16 * 4 + encoders.RECT_HEADER)]


def test_photo_scene_is_deterministic_and_many_coloured() -> None:
    a, b = photo_like(64, 48, seed=3), photo_like(64, 48, seed=3)
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 500


def test_frame_matching_needs_every_frame_in_order() -> None:
    assert peer.match_frames([7, 1, 2, 3], [1, 2, 3]) == [1, 2, 3]
    assert peer.match_frames([1, 3, 2], [1, 2, 3]) is None


def test_json_has_no_nan() -> None:
    assert bench._no_nan({"a": [float("nan"), 1.0]}) == {"a": [None, 1.0]}


def test_frame_counter_stamp_reads_back_as_the_page_reads_it() -> None:
    from pdum.rfb.bench.paced_server import BLOCK, COUNTER_BITS, stamp

    for n in (0, 1, 300, 2**COUNTER_BITS - 1):
        frame = stamp(SCENES["seed_scene"](320, 240, n), n)
        centre = frame[BLOCK // 2, BLOCK // 2 :: BLOCK][:COUNTER_BITS, 1]  # green, as the page reads it
        assert sum(1 << i for i, v in enumerate(centre) if v > 127) == n


def test_reports_give_best_runs_and_the_cost_of_many_clients() -> None:
    """The peer table's best-run ratio comes from the repetitions; the scaling table divides each
    client count's CPU by the one-client CPU of the same server and case."""

    def run(server: str, clients: int, cpu: float, repeats: list[float]) -> peer.Run:
        r = peer.Run(server, "seed_scene", 320, 240, "Tight", clients, frames=10, cpu_ms_per_frame=cpu)
        r.repeats = [{"cpu_ms_per_frame": v, "wall_ms_per_frame": 1.0} for v in repeats]
        return r

    one = [run("pdum", 1, 0.2, [0.3, 0.2, 0.18]), run("libvncserver", 1, 0.16, [0.16, 0.2, 0.15])]
    line = report.peer_text(one).splitlines()[2].split(" | ")
    assert line[5:11] == ["0.200", "0.160", "1.25", "0.180", "0.150", "1.20"]
    many = [*one, run("pdum", 16, 0.5, [0.5]), run("libvncserver", 16, 1.6, [1.6])]
    rows = [row.split(" | ") for row in report.scaling_text(many).splitlines()[2:]]
    assert [row[2] for row in rows] == ["1", "16"]
    assert rows[1][6:8] == ["2.50", "10.00"]


@contextlib.contextmanager
def bench_server(
    program: str | list[str], *args: str
) -> Iterator[tuple[subprocess.Popen[str], list[socket.socket]]]:
    """``python -m pdum.rfb.bench.<program> ARGS`` (or the command ``program``) once it printed
    READY, and a list for the test's client sockets; all of them closed, and the server killed if
    still running, on the way out."""
    command = [sys.executable, "-m", f"pdum.rfb.bench.{program}"] if isinstance(program, str) else program
    server = subprocess.Popen([*command, *args], stdout=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("READY")
        yield server, clients
    finally:
        for c in clients:
            c.close()
        if server.poll() is None:
            server.kill()
        server.wait()


def server_result(server: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON line a benchmark server prints when its run is over."""
    return dict(json.loads(server.communicate(timeout=30)[0].strip().splitlines()[-1]))


@pytest.fixture(scope="module", params=peer.FLOOR_SERVERS)
def floor_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str | list[str]:
    """Each floor server: the asyncio one's module, and the C one built as the benchmark builds it
    (gcc is among what scripts/test.sh installs)."""
    if request.param == "asyncio":
        return "floor_server"
    source = Path(__file__).resolve().parents[2] / "benchmarks" / "peer" / "floor_server.c"
    exe = tmp_path_factory.mktemp("floor") / "floor_server"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(exe), str(source)], check=True)
    return [str(exe)]


def test_floor_server_serves_every_client_every_frame(floor_server: str | list[str]) -> None:
    """Each floor answers lock-step clients frame after frame and reports its CPU."""
    port = peer.free_port()
    with bench_server(floor_server, str(port), "2", "5", "83", "30") as (server, clients):
        clients += [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        for c in clients:
            c.sendall(bytes(10))
        for _ in range(5):
            for c in clients:
                got = b""
                while len(got) < 83:
                    got += c.recv(83 - len(got))
                assert got == bytes(83)
            for c in clients:
                c.sendall(bytes(10))
        result = server_result(server)
        assert (result["frames"], result["clients"]) == (5, 2) and result["cpu_s"] >= 0


def test_paced_floor_server_writes_every_frame_on_its_clock(floor_server: str | list[str]) -> None:
    """With FPS each floor writes NFRAMES updates on a clock whether or not clients ask again,
    each followed by its period, and then closes: every client reads exactly NFRAMES updates."""
    port = peer.free_port()
    with bench_server(floor_server, str(port), "2", "6", "1000", "30", "20") as (server, clients):
        clients += [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        for c in clients:
            c.sendall(bytes(10))  # asked once; the clock does the rest
        received = []
        for c in clients:
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            received.append(data)
        assert received == [bytes(6000)] * 2
        result = server_result(server)
        assert (result["frames"], result["clients"]) == (6, 2)
        assert result["wall_s"] >= 6 / 20 - 0.01  # six periods, not a burst


def test_floor_table_bounds_the_scaling_ratio() -> None:
    """Per encoding the floors stand for and per floor server: its cost per extra client, the
    one-client frame a server with only that cost per extra client needs to stay under 2x at 16
    (15 extra clients), and pdum.rfb's one client plus only that cost over pdum.rfb's one client
    (the best ratio any own work could reach)."""

    def floor(kind: str, clients: int, cpu: float) -> peer.FloorRun:
        run = peer.FloorRun(clients, 307_216, 0.0, kind, frames=10, cpu_ms_per_frame=cpu)
        run.sys_ms_per_frame = cpu / 2
        return run

    def ours(clients: int, cpu: float) -> peer.Run:
        return peer.Run("pdum", "seed_scene", 320, 240, "Raw", clients, frames=10, cpu_ms_per_frame=cpu)

    floors = [floor("asyncio", 1, 0.05), floor("asyncio", 16, 0.65)]
    floors += [floor("C", 1, 0.02), floor("C", 16, 0.47)]
    text = report.floor_text({"Raw": floors}, [ours(1, 0.4), ours(16, 1.7)])
    rows = [row.split(" | ") for row in text.splitlines()[2:]]
    assert [row[:3] for row in rows] == [["| Raw", "asyncio", "1"], ["| Raw", "asyncio", "16"],
                                         ["| Raw", "C", "1"], ["| Raw", "C", "16"]]  # fmt: skip
    assert rows[1][3] == "307,216" and rows[0][7:9] == ["n/a", "n/a"]
    assert rows[1][6:12] == ["13.00", "40.0", "0.600", "1.70", "4.25", "2.50"]  # (0.4 + 0.6) / 0.4
    assert rows[3][6:12] == ["23.50", "30.0", "0.450", "1.70", "4.25", "2.12"]  # (0.4 + 0.45) / 0.4


def test_peer_sections_say_why_they_were_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot_build(workdir: object) -> None:
        raise peer.Skip("gcc not found")

    monkeypatch.setattr(peer, "build", cannot_build)
    results, text = bench.run(("peer", "scaling"), quick=True)
    assert results["peer"] == {"skipped": "gcc not found"}
    assert results["scaling"] == {"skipped": "gcc not found"}
    assert text.count("skipped: gcc not found") == 2


@pytest.mark.parametrize("fps", [0.0, 20.0])
def test_pdum_server_delivers_every_frame_in_lock_step_and_paced(tmp_path: Path, fps: float) -> None:
    """The benchmark's server (lock-step, and on a clock with FPS) gets every frame of the file to
    every client, in order, and reports its CPU over the run (what the harness divides)."""
    width, height, nframes = 64, 32, 6  # (the seed scene's smallest size whose frames all differ)
    path = tmp_path / "frames.rgb"
    crcs = peer.write_frames(path, "seed_scene", width, height, nframes)
    assert len(set(crcs)) == nframes
    port = peer.free_port()
    args = [str(port), str(width), str(height), str(nframes), str(path), "2", "30"]
    request = struct.pack(">BBHHHH", 3, 1, 0, 0, width, height)
    rgbx = struct.pack(">BxxxBBBBHHHBBBxxx", 0, 32, 24, 0, 1, 255, 255, 255, 0, 8, 16)  # R,G,B,x bytes
    with bench_server("pdum_server", *args, *([str(fps)] if fps else [])) as (server, clients):
        clients += [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        held: list[list[int]] = [[], []]
        for c in clients:
            rfb_handshake(c)
            c.sendall(rgbx + struct.pack(">BxHi", 2, 1, 0) + request)  # Raw only, then a request
        for _ in range(nframes):
            for c, frames in zip(clients, held, strict=True):
                kind, count = struct.unpack(">BxH", recv_exactly(c, 4))
                assert (kind, count) == (0, 1)
                x, y, w, h, encoding = struct.unpack(">HHHHi", recv_exactly(c, 12))
                assert (x, y, w, h, encoding) == (0, 0, width, height, 0)
                pixels = np.frombuffer(recv_exactly(c, w * h * 4), np.uint8).reshape(h, w, 4)
                frames.append(zlib.crc32(pixels[..., :3].tobytes()))
                c.sendall(request)
        result = server_result(server)
        assert held == [crcs, crcs]
        assert (result["frames"], result["clients"]) == (nframes - 1, 2) and result["cpu_s"] >= 0
        if fps:  # on the clock: frame k at start + (k - 1) / fps, then its period
            assert result["wall_s"] >= 0.9 * (nframes - 1) / fps


@pytest.mark.parametrize("path", websocket_viewers.PATHS)
def test_websocket_viewers_get_every_frame_either_way(path: str) -> None:
    """The websocket section's server and clients: every viewer is sent every frame, served the
    way the run names (a client that misreads a Tight update leaves, and fails this)."""
    run = websocket_viewers.run_once(2, 5, path, fps=20.0, timeout=30)
    assert run.error is None, run.error
    assert run.every_frame and run.direct == (path != "recv-send")
    assert run.cpu_ms_per_frame > 0


def test_websocket_table_compares_the_direct_path_with_recv_send() -> None:
    def viewers(path: str, clients: int, cpu: float, direct: bool) -> websocket_viewers.ViewerRun:
        run = websocket_viewers.ViewerRun(path, clients, 10, 10.0, cpu_ms_per_frame=cpu)
        run.sys_ms_per_frame = cpu / 4
        run.every_frame, run.direct = True, direct
        return run

    runs = [viewers("direct", 1, 1.0, True), viewers("recv-send", 1, 1.0, False),
            viewers("direct", 16, 1.9, True), viewers("recv-send", 16, 2.5, True),
            viewers("floor", 1, 0.2, True), viewers("floor", 16, 0.65, True)]  # fmt: skip
    rows = [row.strip("| ").split(" | ") for row in report.websocket_text(runs).splitlines()[2:]]
    assert rows[2] == ["16", "direct", "1.90", "0.475", "1.90", "60.0", "0.76", "1.45", "ok"]  # 1.0 + 0.45
    assert rows[3][:6] == ["16", "recv-send", "2.50", "0.625", "2.50", "100"]
    assert rows[3][8] == "wrong path"  # a recv-send run whose sessions took the direct path measured nothing
    assert rows[5][:6] == ["16", "floor", "0.650", "0.163", "3.25", "30.0"] and rows[5][8] == "ok"
