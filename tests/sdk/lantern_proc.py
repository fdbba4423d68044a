"""Start the real lantern binary on ephemeral loopback ports and stop it.

Readiness is the `lantern listening proxy=... admin=...` line on stderr,
read with a deadline; stop is SIGTERM (then SIGKILL if it does not drain).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"lantern listening proxy=(\S+) admin=(\S+)")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def lantern_bin() -> Path:
    """$LANTERN_BIN (as given, relative to the current directory), else the
    repo's target/debug/lantern."""
    configured = os.environ.get("LANTERN_BIN")
    path = Path(configured).resolve() if configured else REPO_ROOT / "target" / "debug" / "lantern"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"lantern binary not found or not executable at {path}; "
            "run `cargo build` in the repo root, or set LANTERN_BIN"
        )
    return path


def _yaml_str(value) -> str:
    # JSON strings are valid YAML scalars; no YAML library needed.
    return json.dumps(str(value))


class Lantern:
    def __init__(self, workdir: Path, policy: str, upstream_ca: Path, upstream_port: int, hosts):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.policy_file = workdir / "policy.yaml"
        self.config_file = workdir / "lantern.yaml"
        self.policy_file.write_text(policy)
        resolve = ", ".join(f"{_yaml_str(h + ':443')}: {_yaml_str(f'127.0.0.1:{upstream_port}')}" for h in hosts)
        self.config_file.write_text(
            "listen: 127.0.0.1:0\n"
            "admin_listen: 127.0.0.1:0\n"
            f"data_dir: {_yaml_str(self.data_dir)}\n"
            f"policy: {_yaml_str(self.policy_file)}\n"
            "upstream:\n"
            f"  ca_file: {_yaml_str(upstream_ca)}\n"
            f"  resolve: {{{resolve}}}\n"
            "  connect_timeout: 5s\n"
            "  response_timeout: 20s\n"
        )
        self.proc: subprocess.Popen | None = None
        self.stderr_lines: list[str] = []
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        self.proxy_url = ""
        self.admin_url = ""
        self.ca_file = workdir / "lantern-ca.pem"

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "Lantern":
        env = {k: v for k, v in os.environ.items() if k.upper() not in _PROXY_ENV}
        self.proc = subprocess.Popen(
            [str(lantern_bin()), "run", "--config", str(self.config_file)],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._pump, name="lantern-stderr", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise RuntimeError(f"lantern did not report readiness within {START_TIMEOUT}s:\n{self.log()}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=STOP_TIMEOUT)
                raise RuntimeError(f"lantern exited ({code}) before it was ready:\n{self.log()}")
            m = READY.search(line)
            if m:
                self.proxy_url = f"http://{m.group(1)}"
                self.admin_url = f"http://{m.group(2)}"
                break
        # The CA as a user gets it: from the admin listener.
        with httpx.Client(trust_env=False, timeout=10) as c:
            r = c.get(f"{self.admin_url}/ca.pem")
        r.raise_for_status()
        assert "BEGIN CERTIFICATE" in r.text, r.text[:200]
        self.ca_file.write_text(r.text)
        return self

    def _pump(self):
        assert self.proc and self.proc.stderr
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise RuntimeError(f"lantern ignored SIGTERM for {STOP_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return "".join(self.stderr_lines[-200:])

    # -- helpers ---------------------------------------------------------
    def audit_events(self) -> list[dict]:
        path = self.data_dir / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]

    def audit_mark(self) -> int:
        """How many audit events exist now; pass to `audit_next`."""
        return len(self.audit_events())

    def audit_next(self, mark: int, timeout: float = 10.0) -> dict:
        """The first audit event written after `mark` (the writer is a background thread)."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.audit_events()
            if len(events) > mark:
                return events[mark]
            if time.monotonic() > deadline:
                raise AssertionError(f"no audit event after #{mark} within {timeout}s")
            time.sleep(0.05)
