"""edgepack deploy|status|rollback"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    d = sub.add_parser("deploy", help="install a bundle on one or more targets")
    d.add_argument("bundle")
    d.add_argument("--target", required=True, help="NAME[,NAME...]")
    d.add_argument("--check", action="store_true", help="run the on-device check after installing")
    d.add_argument("--rollback-on-fail", action="store_true")
    d.add_argument("--keep", type=int, default=3, metavar="N", help="releases to keep on the device (default 3)")
    d.add_argument("--parallel", type=int, default=8, metavar="N", help="targets deployed at once (default 8)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_deploy)
    s = sub.add_parser("status", help="what is installed on a target")
    s.add_argument("--target", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)
    r = sub.add_parser("rollback", help="switch a target back to its previous release")
    r.add_argument("--target", required=True)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_rollback)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _deploy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgepack.cli.render import print_json, progress
    from edgepack.deploy import deploy_many
    from edgepack.deploy.core import _check_hook
    from edgepack.deploy.transfer import prepare
    from edgepack.errors import ConfigError
    from edgepack.targets import resolve_many

    if args.keep < 1 or args.parallel < 1:
        raise ConfigError("--keep and --parallel must be at least 1", "pass a positive number")
    targets = resolve_many(args.target)
    if args.check:
        _check_hook()  # fail before anything moves when the check is not available
    bundle = prepare(Path(args.bundle))
    with progress(not args.json) as bar:
        results = deploy_many(
            targets,
            bundle,
            progress=bar,
            parallel=args.parallel,
            check=args.check,
            rollback_on_fail=args.rollback_on_fail,
            keep=args.keep,
        )
    if args.json:
        print_json({"results": [r.as_dict() for r in results]})
    for r in results:
        if r.status == "failed":
            print(f"edgepack: error: deploy to {r.target} failed: {r.error}", file=sys.stderr)
        elif not args.json:
            print(f"{r.target}: {r.status} {r.bundle_id[:12]} ({_mb(r.bytes_sent)} sent, {r.seconds:.1f} s)")
    return 3 if any(r.status == "failed" for r in results) else 0


def _status(args: argparse.Namespace) -> int:
    from edgepack.cli.render import print_json
    from edgepack.deploy import status

    st = status(args.target)
    if args.json:
        print_json(st.as_dict())
    else:
        print(
            f"{st.target} ({st.arch}): current {st.current or 'none'}, previous {st.previous or 'none'}, "
            f"{len(st.releases)} release(s), {'healthy' if st.healthy else 'NOT healthy'}"
        )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from edgepack.cli.render import print_json
    from edgepack.deploy import rollback

    st = rollback(args.target)
    if args.json:
        print_json(st.as_dict())
    else:
        print(f"{st.target}: rolled back to {st.current}, previous {st.previous}")
    return 0
