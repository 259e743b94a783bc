"""edgepack board up|down|list  (virtual arm64 boards)"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("board", help="virtual arm64 boards (qemu-user + debootstrap + sshd)")
    ps = p.add_subparsers(dest="board_command", metavar="ACTION")
    ps.required = True
    up = ps.add_parser("up", help="start a virtual board and register it as a target")
    up.add_argument("name")
    up.add_argument("--port", type=int)
    up.add_argument("--cpu", choices=["cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "neoverse-n1", "max"])
    up.add_argument("--storage-mb", type=int)
    up.add_argument("--profile")
    up.add_argument("--netns", action="store_true")
    up.add_argument("--json", action="store_true")
    up.set_defaults(func=_todo)
    down = ps.add_parser("down", help="stop a board and remove its state")
    down.add_argument("name")
    down.add_argument("--json", action="store_true")
    down.set_defaults(func=_todo)
    lst = ps.add_parser("list", help="the boards on this machine")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_todo)


def _todo(args: argparse.Namespace) -> int:
    from edgepack.errors import ConfigError

    raise ConfigError("virtual boards are not available in this version", "deploy to a targets/*.yaml board")
