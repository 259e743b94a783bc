"""Network isolation for boards: a network namespace joined to the host by a veth pair, and link faults on it.

``board up --netns`` puts the board's sshd in ``edgepack-NAME``; the host reaches it at the board end of a /30
on the veth pair. The fault helpers act only on that pair and that namespace (this kernel has no netem, see
NOTES.md): a cut link (``ip link set down``), a rate limit (``tc tbf``), random loss (nftables ``numgen``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import BoardError

SUBNET = ipaddress.IPv4Network("10.213.0.0/16")
BOARD_IFACE = "eth0"
NFT_TABLE = "edgepack_faults"


@dataclass(frozen=True)
class Link:
    netns: str
    host_veth: str
    host_ip: str
    board_ip: str


def netns_name(board: str) -> str:
    return f"edgepack-{board}"


def host_veth_name(board: str) -> str:
    # Interface names are at most 15 bytes; a hash keeps long board names apart.
    return "ep" + hashlib.sha1(board.encode()).hexdigest()[:10]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise BoardError(f"`ip {' '.join(args)}` failed: {r.stderr.strip()}", "check iproute2 and that you are root")
    return r


def _in_ns(board: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["nsenter", f"--net=/run/netns/{netns_name(board)}", *cmd], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise BoardError(
            f"`{' '.join(cmd)}` in {netns_name(board)} failed: {r.stderr.strip()}", "is the board up with --netns?"
        )
    return r


def exists(board: str) -> bool:
    return Path("/run/netns", netns_name(board)).exists()


def _used_addresses() -> set[ipaddress.IPv4Network]:
    out = _ip("-4", "-o", "addr", "show").stdout
    return {ipaddress.IPv4Interface(m.group(1)).network for m in re.finditer(r"inet (\S+)", out)}


def create(board: str) -> Link:
    """The namespace, the veth pair and a free /30 (only addresses made here, inside 10.213.0.0/16)."""
    ns, veth = netns_name(board), host_veth_name(board)
    teardown(board)
    used = _used_addresses()
    subnets = list(SUBNET.subnets(new_prefix=30))
    start = int(hashlib.sha1(board.encode()).hexdigest(), 16) % len(subnets)
    for i in range(len(subnets)):
        net = subnets[(start + i) % len(subnets)]
        if not any(net.overlaps(u) for u in used):
            break
    else:
        raise BoardError("no free /30 left in 10.213.0.0/16 for the board's link", "take some boards down")
    host_ip, board_ip = (str(a) for a in list(net.hosts())[:2])
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", veth, "type", "veth", "peer", "name", BOARD_IFACE, "netns", ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", veth)
        _ip("link", "set", veth, "up")
        _ip("-n", ns, "addr", "add", f"{board_ip}/30", "dev", BOARD_IFACE)
        _ip("-n", ns, "link", "set", BOARD_IFACE, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    except BoardError:
        teardown(board)
        raise
    return Link(ns, veth, host_ip, board_ip)


def teardown(board: str) -> None:
    """Remove the veth pair and the namespace (deleting either end of a veth removes both)."""
    _ip("link", "del", host_veth_name(board), check=False)
    if exists(board):
        _ip("netns", "del", netns_name(board))


def cut_link(board: str) -> None:
    """Pull the cable: the board's end goes down, the host end loses carrier and drops what it would send.

    Downing the board's end rather than the host's keeps the host's route to the /30 (flagged ``linkdown``), so
    packets for the board are dropped on the veth instead of leaking to the default route.
    """
    _ip("-n", netns_name(board), "link", "set", BOARD_IFACE, "down")


def restore_link(board: str, *, timeout: float = 5) -> None:
    """Plug the cable back in and return once the host end has carrier again."""
    _ip("-n", netns_name(board), "link", "set", BOARD_IFACE, "up")
    veth = host_veth_name(board)
    # Neighbour entries that failed while the link was down would delay the first packets by a retry period.
    _ip("neigh", "flush", "dev", veth, "nud", "failed", check=False)
    _ip("-n", netns_name(board), "neigh", "flush", "dev", BOARD_IFACE, "nud", "failed", check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Both ends report UP, and linkwatch has swapped the "noop" qdisc (which drops everything) back out.
        ends = [
            _ip("-o", "link", "show", veth, check=False).stdout,
            _ip("-n", netns_name(board), "-o", "link", "show", BOARD_IFACE, check=False).stdout,
        ]
        if all("state UP" in e and "qdisc noop" not in e for e in ends):
            return
        time.sleep(0.02)
    raise BoardError(f"{veth} has no carrier {timeout:.0f} s after restore_link", "is the board up with --netns?")


def set_bandwidth(board: str, rate: str, *, burst: str = "32kb", latency: str = "50ms") -> None:
    """Limit both directions to ``rate`` (tc syntax, e.g. ``"10mbit"``) with a token bucket on each veth end."""
    if not re.fullmatch(r"\d+(\.\d+)?([kmg]?(bit|bps))", rate):
        raise BoardError(f"bad rate {rate!r}", 'use tc syntax, e.g. "512kbit" or "10mbit"')
    tbf = ["root", "tbf", "rate", rate, "burst", burst, "latency", latency]
    r = subprocess.run(["tc", "qdisc", "replace", "dev", host_veth_name(board), *tbf], capture_output=True, text=True)
    if r.returncode != 0:
        raise BoardError(f"tc failed on {host_veth_name(board)}: {r.stderr.strip()}", "is the board up with --netns?")
    _in_ns(board, "tc", "qdisc", "replace", "dev", BOARD_IFACE, *tbf)


def clear_bandwidth(board: str) -> None:
    subprocess.run(["tc", "qdisc", "del", "dev", host_veth_name(board), "root"], capture_output=True)
    _in_ns(board, "tc", "qdisc", "del", "dev", BOARD_IFACE, "root", check=False)


def drop_packets(board: str, percent: int) -> None:
    """Drop ``percent`` % of the packets reaching the board (100 = black hole with the link still up)."""
    if not 0 <= percent <= 100:
        raise BoardError(f"bad loss {percent} %", "give 0..100")
    clear_drops(board)
    rule = "drop" if percent >= 100 else f"numgen random mod 100 < {percent} drop"
    script = (
        f"add table inet {NFT_TABLE}\n"
        f"add chain inet {NFT_TABLE} in {{ type filter hook input priority 0; }}\n"
        f"add rule inet {NFT_TABLE} in iifname {BOARD_IFACE} {rule}\n"
    )
    r = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns_name(board)}", "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise BoardError(f"nft failed in {netns_name(board)}: {r.stderr.strip()}", "install nftables (make sysdeps)")


def clear_drops(board: str) -> None:
    _in_ns(board, "nft", "delete", "table", "inet", NFT_TABLE, check=False)
