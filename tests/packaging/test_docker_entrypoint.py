"""docker/entrypoint.sh's exact command line, run outside a container, and a lint of docker/Dockerfile.

No container engine runs here, so the entrypoint runs on the host with the project's ``pdum-rfb``
first on PATH and free ports in place of 5900/6080; everything else is what the image runs.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pdum.rfb import testing as patterns

from .support import REPO, run_served, vnc_capture

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(120)]

DOCKER = REPO / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def entry_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VNC_PASSWORD", "ALLOW_INSECURE", "APP_SCRIPT")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(VNC_PORT=str(free_port()), HTTP_PORT=str(free_port()), VNC_PASSWORD_FILE="/nonexistent")
    env.update(extra)
    return env


def test_password_from_env_gives_exact_pixels_and_health(tmp_path: Path) -> None:
    env = entry_env(VNC_PASSWORD="s3cret")
    cmd = ["sh", str(ENTRYPOINT), "--pattern", "test_card", "--width", "320", "--height", "240"]
    with run_served(cmd, env=env, cwd=tmp_path) as srv:
        text = "".join(srv.lines)
        assert f"vnc://0.0.0.0:{env['VNC_PORT']}" in text and srv.http_port == int(env["HTTP_PORT"])
        assert "s3cret" not in text
        shot = vnc_capture(srv.vnc_port, tmp_path / "card.png", password="s3cret")
        np.testing.assert_array_equal(shot, patterns.test_card(320, 240))
        status, body, _ = srv.get("/health")  # what the image's HEALTHCHECK asks
        assert status == 200, body
        bad = subprocess.run(
            [str(Path(sys.executable).parent / "vncdo"), "-s", f"127.0.0.1::{srv.vnc_port}", "-p", "wrong"]
            + ["capture", str(tmp_path / "no.png")],
            capture_output=True,
            timeout=30,
        )
        assert bad.returncode != 0 and not (tmp_path / "no.png").exists()


def test_refuses_to_start_open_on_all_interfaces(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)], env=entry_env(), cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to serve 0.0.0.0 without a password" in result.stderr
    with socket.socket() as s:  # nothing was left listening
        assert s.connect_ex(("127.0.0.1", int(entry_env()["VNC_PORT"]))) != 0


def test_allow_insecure_starts_without_password(tmp_path: Path) -> None:
    cmd = ["sh", str(ENTRYPOINT), "--pattern", "checkerboard", "--width", "64", "--height", "48"]
    with run_served(cmd, env=entry_env(ALLOW_INSECURE="1"), cwd=tmp_path) as srv:
        shot = vnc_capture(srv.vnc_port, tmp_path / "open.png")
        np.testing.assert_array_equal(shot, patterns.checkerboard(64, 48))
        assert any("without a password (ALLOW_INSECURE=1)" in line for line in srv.lines)


APP = """
import numpy as np


def render(t):
    frame = np.zeros((60, 80, 3), dtype=np.uint8)
    frame[:, :, 1] = 200
    frame[10:20, 30:50] = (255, 140, 0)
    return frame
"""


def expected_app_frame() -> np.ndarray:
    frame = np.zeros((60, 80, 3), dtype=np.uint8)
    frame[:, :, 1] = 200
    frame[10:20, 30:50] = (255, 140, 0)
    return frame


@pytest.mark.parametrize("how", ["args", "APP_SCRIPT", "module"])
def test_user_script_with_password_file(tmp_path: Path, how: str) -> None:
    (tmp_path / "myapp.py").write_text(APP)
    secret = tmp_path / "vnc_password"
    secret.write_text("fromfile\n")
    env = entry_env(VNC_PASSWORD_FILE=str(secret), PYTHONPATH=str(tmp_path))
    cmd = ["sh", str(ENTRYPOINT)]
    if how == "args":
        cmd += ["--script", "myapp.py", "--fps", "20"]
    elif how == "APP_SCRIPT":
        env["APP_SCRIPT"] = str(tmp_path / "myapp.py:render")
    else:
        cmd += ["--script", "myapp:render"]
    with run_served(cmd, env=env, cwd=tmp_path) as srv:
        shot = vnc_capture(srv.vnc_port, tmp_path / "app.png", password="fromfile")
    np.testing.assert_array_equal(shot, expected_app_frame())


def test_non_option_argument_runs_that_command(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "pdum-rfb", "--version"], env=entry_env(), capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("pdum-rfb "), result.stderr


# -- Dockerfile lint (no hadolint here): it parses, and says what the image promises -------------------
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER",
}  # fmt: skip


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_parses_and_keeps_its_promises() -> None:
    instructions = dockerfile_instructions()
    unknown = [word for word, _ in instructions if word not in INSTRUCTIONS]
    assert not unknown, f"unknown Dockerfile instructions {unknown}"
    words = [word for word, _ in instructions]
    assert instructions[0] == ("ARG", "BASE=python:3.12-slim")
    assert words[1] == "FROM" and instructions[1][1] == "${BASE}"
    args = dict(instructions)
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    assert "/health" in args["HEALTHCHECK"] and args["HEALTHCHECK"].split("CMD", 1)[0].strip().startswith(
        "--"
    )
    assert set(args["EXPOSE"].split()) == {"5900", "6080"}
    assert "entrypoint" in args["ENTRYPOINT"]
    assert any("wheelhouse" in rest for word, rest in instructions if word == "COPY")
    assert "--no-index" in args["RUN"] and "--find-links" in args["RUN"]
    for word, rest in instructions:  # exec forms must be valid JSON
        exec_form = rest.split("CMD", 1)[1].strip() if word == "HEALTHCHECK" else rest
        if word in ("CMD", "ENTRYPOINT", "HEALTHCHECK"):
            assert exec_form.startswith("["), f"{word} should use the exec form"
            assert isinstance(json.loads(exec_form), list)
    copied = [rest.split()[-2] for word, rest in instructions if word == "COPY"]
    for source in copied:
        assert source.rstrip("/") in ("wheelhouse", "entrypoint.sh"), source
    assert os.access(ENTRYPOINT, os.X_OK)
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)]).returncode == 0


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [("no_such_module:render", 2, "No module named"), ("json:nothing", 2, "no function 'nothing'"),
     ("missing_app.py", 1, "No such file")],
)  # fmt: skip
def test_bad_script_fails_clearly(tmp_path: Path, spec: str, code: int, message: str) -> None:
    cmd = [sys.executable, "-m", "pdum.rfb.cli", "serve", "--script", spec, "--vnc-port", "0", "--port", "-1"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == code and message in result.stderr, result.stderr
