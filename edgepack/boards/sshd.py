"""The board's sshd: fresh keys, its config, the pinned known_hosts line, and waiting until it answers."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import BoardError

CONFIG_PATH = "/etc/ssh/edgepack_sshd_config"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"


def keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at ``path`` / ``path.pub``; returns the public line."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    r = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise BoardError(f"ssh-keygen failed: {r.stderr.strip()}", "install openssh-client (make sysdeps)")
    return path.with_name(path.name + ".pub").read_text().strip()


def config(listen: str, port: int) -> str:
    # Key auth only. internal-sftp avoids one emulated exec per SFTP session. ClientAliveInterval reaps sessions
    # whose client vanished (cut links in fault tests), so they do not pile up.
    return f"""# written by edgepack board up
Port {port}
ListenAddress {listen}
HostKey {HOST_KEY}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
ClientAliveInterval 5
ClientAliveCountMax 3
MaxStartups 64:30:128
MaxSessions 64
PrintMotd no
PidFile /run/sshd.pid
Subsystem sftp internal-sftp
"""


def known_hosts_line(host: str, port: int, host_pub: str) -> str:
    """OpenSSH's ``[host]:port`` form (what paramiko and ssh look up for a non-22 port), key type and key only."""
    keytype, key = host_pub.split()[:2]
    hostspec = host if port == 22 else f"[{host}]:{port}"
    return f"{hostspec} {keytype} {key}\n"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str
    identity: Path
    known_hosts: Path


def wait_banner(host: str, port: int, timeout: float, alive: object = None) -> float:
    """Seconds until sshd at host:port sends its ``SSH-`` banner; BoardError after ``timeout``.

    ``alive`` is a callable returning False once the board's processes died, to fail fast instead of waiting.
    """
    t0 = time.monotonic()
    last = "no answer"
    while time.monotonic() - t0 < timeout:
        if callable(alive) and not alive():
            raise BoardError("the board's processes exited before sshd answered", "see the console log quoted above")
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(5)
                banner = s.recv(64)
                if banner.startswith(b"SSH-"):
                    return time.monotonic() - t0
                last = f"unexpected banner {banner[:20]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise BoardError(
        f"sshd on {host}:{port} did not answer within {timeout:.0f} s ({last})",
        "see the board's console log; on a busy machine raise --timeout",
    )


def run(ep: Endpoint, command: str, *, timeout: float = 60) -> tuple[int, str, str]:
    """Run one command over real SSH with the pinned host key (strict: unknown or changed keys are refused)."""
    import paramiko

    from edgepack.errors import ConnectError, HostKeyError

    client = paramiko.SSHClient()
    client.load_host_keys(str(ep.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            ep.host,
            port=ep.port,
            username=ep.user,
            key_filename=str(ep.identity),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        _, out, err = client.exec_command(command, timeout=timeout)
        code = out.channel.recv_exit_status()
        return code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
    except paramiko.BadHostKeyException as e:
        raise HostKeyError(
            f"{ep.host}:{ep.port} presented a host key that does not match {ep.known_hosts}",
            "if the board was re-created, run `edgepack board down` and `board up` again",
        ) from e
    except paramiko.SSHException as e:
        if "not found in known_hosts" in str(e):
            raise HostKeyError(
                f"{ep.host}:{ep.port} is not in {ep.known_hosts}",
                "re-create the board; host keys are never auto-accepted",
            ) from e
        raise ConnectError(f"SSH to {ep.user}@{ep.host}:{ep.port} failed ({e})", "is the board running?") from e
    except (OSError, EOFError) as e:
        raise ConnectError(f"cannot reach {ep.host}:{ep.port} ({e})", "is the board running? see `board list`") from e
    finally:
        client.close()
