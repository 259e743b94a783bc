"""A throwaway sshd for tests: real OpenSSH on loopback (or inside a network namespace behind a veth, so a test
can cut or throttle the link), its own host key, one client key, root login by key only.

Needs root (sshd privilege separation, ``ip netns``). ``Sshd.target()`` gives the target fields edgepack uses.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"


def available() -> str | None:
    """Why a real sshd cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to run sshd"
    for tool in (SSHD, "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def netns_available() -> str | None:
    if available():
        return available()
    if shutil.which("ip") is None:
        return "iproute2 is not installed"
    probe = f"epprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create network namespaces: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Sshd:
    """``with Sshd(tmp) as s:`` — runs until the block ends. ``netns=True`` puts it behind a veth pair."""

    def __init__(self, workdir: Path, *, netns: bool = False, rate: str | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.netns = f"ep{os.getpid() % 10000}x{id(self) % 9973}" if netns else None
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        if self.netns:
            n = (os.getpid() + id(self)) % 250 + 1
            self.veth_host = f"v{self.netns}h"[:15]
            self.veth_ns = f"v{self.netns}n"[:15]
            self.host_ip = f"10.231.{n}.1"
            self.host = f"10.231.{n}.2"
        else:
            self.host = "127.0.0.1"
        self.port = 0
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> Sshd:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        if not self.host_key.exists():
            _keygen(self.host_key)
            _keygen(self.client_key)
        auth = self.dir / "authorized_keys"
        auth.write_text(self.client_key.with_suffix(".pub").read_text())
        auth.chmod(0o600)
        if self.netns:
            self._make_netns()
        self.port = _free_port() if not self.netns else 2222
        cfg = self.dir / "sshd_config"
        cfg.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.host}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {auth}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    "UsePAM no",
                    # Aborted sessions (link cut, killed client) end within ~6 s instead of piling up.
                    "ClientAliveInterval 2",
                    "ClientAliveCountMax 3",
                    "MaxStartups 64:30:128",
                    "MaxSessions 64",
                    "LogLevel ERROR",
                    "Subsystem sftp /usr/lib/openssh/sftp-server",
                    "",
                ]
            )
        )
        cmd = [SSHD, "-D", "-e", "-f", str(cfg)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.log = (self.dir / "sshd.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("sshd did not start within 15 s")
        pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {pub[0]} {pub[1]}\n")

    def _make_netns(self) -> None:
        assert self.netns
        self._cleanup_netns()
        _ip("netns", "add", self.netns)
        _ip("link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
        _ip("link", "set", self.veth_ns, "netns", self.netns)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.veth_host)
        _ip("link", "set", self.veth_host, "up")
        _ip("-n", self.netns, "addr", "add", f"{self.host}/30", "dev", self.veth_ns)
        _ip("-n", self.netns, "link", "set", self.veth_ns, "up")
        _ip("-n", self.netns, "link", "set", "lo", "up")
        if self.rate:
            # Throttle the board's send and receive side so uploads take long enough to interrupt.
            subprocess.run(
                [
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    self.veth_host,
                    "root",
                    "tbf",
                    "rate",
                    self.rate,
                    "burst",
                    "32kb",
                    "latency",
                    "50ms",
                ],
                check=True,
            )

    def _cleanup_netns(self) -> None:
        if self.netns:
            subprocess.run(["ip", "link", "del", self.veth_host], capture_output=True)
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()
        self._cleanup_netns()

    # -- faults ------------------------------------------------------------------------------------------------
    def link(self, up: bool) -> None:
        """Cut (or restore) the link: the veth goes down, packets in flight are lost, nobody is told."""
        assert self.netns, "link faults need Sshd(netns=True)"
        _ip("link", "set", self.veth_host, "up" if up else "down")

    # -- for edgepack ------------------------------------------------------------------------------------------
    def target(self, name: str, root: Path | str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "host": self.host,
            "port": self.port,
            "user": "root",
            "identity": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "root": str(root),
            **extra,
        }
