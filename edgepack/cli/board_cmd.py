"""edgepack board up|down|list  (virtual arm64 boards)"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("board", help="virtual arm64 boards (qemu-user + debootstrap + sshd)")
    ps = p.add_subparsers(dest="board_command", metavar="ACTION")
    ps.required = True
    up = ps.add_parser("up", help="start a virtual board and register it as a target")
    up.add_argument("name")
    up.add_argument("--port", type=int, help="sshd port on 127.0.0.1 (default: a free one)")
    up.add_argument(
        "--cpu",
        choices=["cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "max"],
        help="emulated CPU: cortex-a72 = Pi 4 (no dotprod), cortex-a76 = Pi 5 (dotprod); "
        "default: the profile's CPU, else max",
    )
    up.add_argument("--storage-mb", type=int, help="size of the install root's own disk (to test disk-full)")
    up.add_argument("--profile", help="the target's profile (default: from --cpu, e.g. cortex-a76 → rpi-5)")
    up.add_argument("--netns", action="store_true", help="behind a veth pair in its own network namespace")
    up.add_argument("--timeout", type=float, default=120, help="seconds to wait for the board's sshd (default 120)")
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=_up)
    down = ps.add_parser("down", help="stop a board and remove its state")
    down.add_argument("name")
    down.add_argument("--json", action="store_true")
    down.set_defaults(func=_down)
    lst = ps.add_parser("list", help="the boards on this machine")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_list)


def _progress(msg: str) -> None:
    print(f"edgepack: {msg}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    from edgepack.boards import board

    r = board.up(
        args.name,
        port=args.port,
        cpu=args.cpu,
        storage_mb=args.storage_mb,
        profile=args.profile,
        use_netns=args.netns,
        timeout=args.timeout,
        progress=_progress,
    )
    b = r.board
    if args.json:
        doc = {
            **b.listing(),
            "already_running": r.already_running,
            "stale_cleaned": r.stale_cleaned,
            "userland_built": r.userland_built,
            "seconds": round(r.seconds, 2),
        }
        print(json.dumps(doc, indent=2))
    elif r.already_running:
        print(f"board {b.name} is already running on {b.host}:{b.port} ({b.cpu}); nothing to do")
    else:
        print(
            f"board {b.name} is up on {b.host}:{b.port} ({b.cpu}, profile {b.profile}) in {r.seconds:.1f} s"
            f" — use --target {b.name}"
        )
    return 0


def _down(args: argparse.Namespace) -> int:
    from edgepack.boards import board

    r = board.down(args.name)
    if args.json:
        print(
            json.dumps(
                {
                    "name": r.name,
                    "was_running": r.was_running,
                    "killed": r.killed,
                    "unmounted": r.unmounted,
                    "removed": r.removed,
                },
                indent=2,
            )
        )
    else:
        what = "stopped and removed" if r.was_running else "was not running; its state was removed"
        print(f"board {r.name} {what}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from edgepack.boards import board

    boards = [b.listing() for b in board.list_boards()]
    if args.json:
        print(json.dumps(boards, indent=2))
        return 0
    if not boards:
        print("no boards (start one with `edgepack board up NAME`)")
        return 0
    rows = [["NAME", "STATE", "ADDRESS", "CPU", "PROFILE"]]
    rows += [
        [str(b["name"]), str(b["state"]), f"{b['host']}:{b['port']}", str(b["cpu"]), str(b["profile"])] for b in boards
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
