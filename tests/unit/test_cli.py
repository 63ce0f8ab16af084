"""The pdum-rfb command line: doctor, and serve/demo running a bounded number of frames."""

from __future__ import annotations

import subprocess
import sys


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdum.rfb.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_doctor_reports_a_working_install() -> None:
    result = _run("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "handshake and first update" in result.stdout and "all good" in result.stdout


def test_demo_and_serve_stop_after_frames() -> None:
    demo = _run("demo", "--frames", "3", "--fps", "50", "--vnc-port", "0", "--port", "0")
    assert demo.returncode == 0, demo.stderr
    assert "vnc://127.0.0.1:" in demo.stdout and "Browser:   http://127.0.0.1:" in demo.stdout
    assert "stopped after 3 frames" in demo.stdout
    serve = _run("serve", "--pattern", "noise", "--frames", "1", "--vnc-port", "0", "--port", "-1")
    assert serve.returncode == 0 and "Browser" not in serve.stdout


def test_bad_arguments_fail_clearly() -> None:
    result = _run("serve", "--host", "0.0.0.0", "--frames", "1", "--vnc-port", "0", "--port", "-1")
    assert result.returncode == 2 and "without authentication" in result.stderr
