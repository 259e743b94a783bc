"""edgepack profiles list|show|validate"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("profiles", help="list, show and validate device profiles")
    ps = p.add_subparsers(dest="profiles_command", metavar="ACTION")
    ps.required = True
    lst = ps.add_parser("list", help="the known profiles")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_list)
    show = ps.add_parser("show", help="one profile, resolved after extends:")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)
    val = ps.add_parser("validate", help="check profile files")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=_validate)


def _list(args: argparse.Namespace) -> int:
    from edgepack.cli.render import console, print_json
    from edgepack.profiles import available, load_file

    profiles = [load_file(path) for path in available().values()]
    if args.json:
        print_json(
            [
                {
                    "name": p.name,
                    "arch": p.device.arch,
                    "cpu": p.device.cpu,
                    "isa": p.device.isa,
                    "memory_mb": p.device.memory_mb,
                    "quantization": p.quantization.default,
                    "description": p.description,
                }
                for p in profiles
            ]
        )
        return 0
    from rich.table import Table

    t = Table("name", "arch", "cpu", "isa", "RAM MB", "quant")
    for p in profiles:
        t.add_row(
            p.name,
            p.device.arch,
            p.device.cpu or "",
            ",".join(p.device.isa),
            str(p.device.memory_mb),
            p.quantization.default,
        )
    console().print(t)
    return 0


def _show(args: argparse.Namespace) -> int:
    from edgepack.cli.render import print_json
    from edgepack.profiles import load

    prof = load(args.name)
    if args.json:
        print_json(prof.model_dump(mode="json"))
    else:
        import yaml

        print(yaml.safe_dump(prof.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgepack.profiles import load_file

    for f in args.files:
        prof = load_file(Path(f))
        print(f"{f}: ok ({prof.name}, {prof.device.arch})")
    return 0
