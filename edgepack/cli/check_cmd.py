"""edgepack check --target NAME [--report DIR] [--json]"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    c = sub.add_parser("check", help="measure accuracy and latency of the installed bundle on the device")
    c.add_argument("--target", required=True)
    c.add_argument("--report", help="folder for index.html and plots")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_todo)


def _todo(args: argparse.Namespace) -> int:
    from edgepack.errors import ConfigError

    raise ConfigError("on-device checks are not available in this version", "run the host's check by hand")
