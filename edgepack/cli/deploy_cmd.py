"""edgepack deploy|status|rollback"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    d = sub.add_parser("deploy", help="install a bundle on one or more targets")
    d.add_argument("bundle")
    d.add_argument("--target", required=True, help="NAME[,NAME...]")
    d.add_argument("--check", action="store_true", help="run the on-device check after installing")
    d.add_argument("--rollback-on-fail", action="store_true")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_todo)
    s = sub.add_parser("status", help="what is installed on a target")
    s.add_argument("--target", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_todo)
    r = sub.add_parser("rollback", help="switch a target back to its previous release")
    r.add_argument("--target", required=True)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_todo)


def _todo(args: argparse.Namespace) -> int:
    from edgepack.errors import ConfigError

    raise ConfigError("deploying is not available in this version", "copy the bundle and run install.sh by hand")
