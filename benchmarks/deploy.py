"""Deploy benchmark on virtual arm64 boards (root, qemu-user; see `edgepack board up`). Prints one JSON document.

Measures, on the same boards in the same run:
- upload phase of a first deploy vs `scp` of the same bundle to the same board (both through the board's sshd),
  at the fleet bundle's size and at a realistic model-bundle size (``--big-mb``, ≈ the 51 MB MiniLM rpi-5 bundle);
- bytes sent when redeploying an unchanged bundle;
- deploying to N boards in parallel vs one after another, with the time of each phase;
- how long a cut link takes to be reported (a board in its own network namespace).

    python benchmarks/deploy.py [--boards 8] [--size-mb 16] [--big-mb 51] [--reps 3] [--cpu cortex-a76] [--keep-boards]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgepack.bundle import Member, write_bundle
from edgepack.bundle.writer import BUNDLE_FORMAT
from edgepack.deploy import deploy_many, deploy_to
from edgepack.deploy.transfer import LocalBundle, prepare
from edgepack.errors import EdgepackError
from edgepack.targets import Target, resolve

INSTALL_SH = Path(__file__).resolve().parent.parent / "edgepack" / "deploy" / "install.sh"


def make_bundle(out: Path, profile: str, size: int, tag: str) -> LocalBundle:
    from edgepack import profiles

    blob = out.with_suffix(".bin")
    blob.write_bytes(tag.encode() + os.urandom(size))
    manifest = {
        "format": BUNDLE_FORMAT,
        "profile": profiles.load(profile).model_dump(mode="json"),
        "model": {"source": f"bench:{tag}", "task": "generic"},
        "runtime": {"onnxruntime": "1.32.0"},
    }
    write_bundle(
        out,
        manifest,
        [Member("install.sh", source=INSTALL_SH, executable=True), Member("model/model.onnx", source=blob)],
    )
    return prepare(out)


def wipe(t: Target) -> None:
    tr = t.connect()
    try:
        tr.run(f"rm -rf {t.root} /root/scp.bin", timeout=120).check(t.name, "wiping the install root")
    finally:
        tr.close()


def ssh_args(t: Target) -> list[str]:
    return [
        "-q",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={t.known_hosts}",
        "-i",
        str(t.identity),
    ]


def _timed(cmd: list[str], timeout: float) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, timeout=timeout)
    return time.monotonic() - t0


def scp_seconds(t: Target, path: Path, tiny: Path) -> tuple[float, float, float]:
    """(scp wall time, scp wall time of a 1-byte file, `ssh board true` wall time).

    The 1-byte scp is everything scp spends besides moving bytes (TCP + SSH handshake, auth, starting the remote
    `scp -t`, closing): subtracting it from the big scp's wall time leaves scp's time on the wire. `ssh true` is
    the other estimate of that fixed cost; both are reported, and the ratio is given against each.
    """
    dest = f"{t.user}@{t.host}:/root/scp.bin"
    scp = _timed(["scp", *ssh_args(t), "-P", str(t.port), str(path), dest], 600)
    fixed = _timed(["scp", *ssh_args(t), "-P", str(t.port), str(tiny), dest], 120)
    ssh_true = _timed(["ssh", *ssh_args(t), "-p", str(t.port), f"{t.user}@{t.host}", "true"], 120)
    subprocess.run(
        ["ssh", *ssh_args(t), "-p", str(t.port), f"{t.user}@{t.host}", "rm -f /root/scp.bin"], check=True, timeout=120
    )
    return scp, fixed, ssh_true


def scp_cipher(t: Target) -> str | None:
    """The cipher OpenSSH's client negotiates with the board by default (what scp uses)."""
    res = subprocess.run(
        ["ssh", *ssh_args(t), "-v", "-p", str(t.port), f"{t.user}@{t.host}", "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    for line in res.stderr.splitlines():
        if "client->server cipher:" in line:
            return line.split("cipher:")[1].split()[0]
    return None


def upload_vs_scp(t: Target, bundle: LocalBundle, reps: int, tiny: Path) -> dict[str, Any]:
    """Upload phase of a first deploy vs scp of the same file, alternating A-B / B-A on the same board."""
    ups: list[float] = []
    scps: list[float] = []
    fixed: list[float] = []
    trues: list[float] = []

    def ours() -> None:
        wipe(t)
        r = deploy_to(t, bundle)
        assert r.status == "installed" and r.bytes_sent == bundle.size, r
        ups.append(r.phases["upload"])

    def theirs() -> None:
        s, f, c = scp_seconds(t, bundle.path, tiny)
        scps.append(s)
        fixed.append(f)
        trues.append(c)

    for i in range(reps):
        for step in (ours, theirs) if i % 2 == 0 else (theirs, ours):
            step()
    tr = t.connect()
    try:
        tr.run("true")
        cipher = getattr(tr, "cipher", None)
    finally:
        tr.close()
    n = bundle.size
    up, scp = statistics.median(ups), statistics.median(scps)
    wire = statistics.median([s - f for s, f in zip(scps, fixed, strict=True)])
    wire_true = statistics.median([s - c for s, c in zip(scps, trues, strict=True)])
    return {
        "bundle_bytes": n,
        "reps": reps,
        "cipher_edgepack": cipher,
        "cipher_scp": scp_cipher(t),
        "upload_phase_s": [round(x, 3) for x in ups],
        "scp_wall_s": [round(x, 3) for x in scps],
        "scp_1byte_s": [round(x, 3) for x in fixed],
        "ssh_true_s": [round(x, 3) for x in trues],
        "upload_MBps": round(n / up / 1e6, 2),
        "scp_MBps_wall": round(n / scp / 1e6, 2),
        "scp_MBps_wire": round(n / max(wire, 1e-3) / 1e6, 2),
        # strict: bytes/s on the wire, ours (the upload phase also opens a channel and starts `cat`) vs scp's with
        # its fixed cost (the 1-byte scp of the same rep) taken out; medians over the reps.
        "ratio_strict_vs_scp_wire": round(wire / up, 3),
        # the same with `ssh true` as scp's fixed cost instead of the 1-byte scp.
        "scp_MBps_wire_ssh_true": round(n / max(wire_true, 1e-3) / 1e6, 2),
        "ratio_strict_vs_scp_wire_ssh_true": round(wire_true / up, 3),
        # whole run: scp's wall time (connect included) vs the upload phase (connect is a separate deploy phase).
        "ratio_vs_scp_wall": round(scp / up, 3),
    }


def boards_up(names: list[str], cpu: str, netns: bool = False) -> list[Target]:
    from edgepack.boards import board

    for n in names:
        board.up(n, cpu=cpu, use_netns=netns)
    return [resolve(n) for n in names]


def more_sections(
    args: argparse.Namespace, out: dict[str, Any], targets: list[Target], b1: LocalBundle, work: Path
) -> None:
    """Unchanged redeploy, fleet serial vs parallel, link cut."""
    from edgepack.boards import board, netns

    first = targets[0]
    # 2. unchanged redeploy.
    r = deploy_to(first, b1)
    out["unchanged"] = {
        "status": r.status,
        "bytes_sent": r.bytes_sent,
        "control_bytes": r.control_bytes,
        "bundle_bytes": b1.size,
        "fraction_on_the_wire": (r.bytes_sent + r.control_bytes) / b1.size,
        "seconds": round(r.seconds, 2),
        "phases": r.phases,
    }

    # 3. fleet: serial vs parallel, each from an empty install root.
    for t in targets:
        wipe(t)
    t0 = time.monotonic()
    serial = [deploy_to(t, b1) for t in targets]
    serial_s = time.monotonic() - t0
    for t in targets:
        wipe(t)
    t0 = time.monotonic()
    par = deploy_many(targets, b1, parallel=len(targets))
    par_s = time.monotonic() - t0
    assert all(x.status == "installed" for x in serial + par), [x.error for x in serial + par]

    def phase_sums(rs: list[Any]) -> dict[str, float]:
        keys = sorted({k for x in rs for k in x.phases})
        return {k: round(sum(x.phases.get(k, 0.0) for x in rs), 2) for k in keys}

    out["fleet"] = {
        "serial_s": round(serial_s, 2),
        "parallel_s": round(par_s, 2),
        "ratio": round(par_s / serial_s, 3),
        "serial_phase_sums_s": phase_sums(serial),
        "parallel_phase_sums_s": phase_sums(par),
        "parallel_per_target_s": [round(x.seconds, 2) for x in par],
    }

    # 4. link cut on a board in its own network namespace.
    if not args.skip_linkcut:
        cut_name = f"{args.prefix}cut"
        (cut,) = boards_up([cut_name], args.cpu, netns=True)
        cut = cut.model_copy(update={"timeout": 5.0})
        big = make_bundle(work / "big.edgepack", args.profile, 64 * 1000 * 1000, "big")
        netns.set_bandwidth(cut_name, "40mbit")
        env = {**os.environ}
        tdir = work / "targets"
        tdir.mkdir()
        import yaml

        (tdir / f"{cut_name}.yaml").write_text(yaml.safe_dump(cut.model_dump(exclude_none=True)))
        env["EDGEPACK_TARGETS"] = str(tdir)
        p = subprocess.Popen(
            [sys.executable, "-m", "edgepack", "deploy", str(big.path), "--target", cut_name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        time.sleep(12)  # into the upload (connect + preflight on the emulated board take a few seconds)
        netns.cut_link(cut_name)
        tc = time.monotonic()
        try:
            _, err = p.communicate(timeout=120)
            detect = time.monotonic() - tc
        finally:
            netns.restore_link(cut_name)
            netns.clear_bandwidth(cut_name)
        out["link_cut"] = {
            "configured_timeout_s": cut.timeout,
            "exit_code": p.returncode,
            "seconds_to_report": round(detect, 2),
            "stderr": err.strip().splitlines(),
        }
        if not args.keep_boards:
            board.down(cut_name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", type=int, default=8)
    ap.add_argument("--size-mb", type=float, default=16)
    ap.add_argument("--big-mb", type=float, default=51, help="second upload-vs-scp size (0: skip)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cpu", default="cortex-a76")
    ap.add_argument("--profile", default="rpi-5")
    ap.add_argument("--keep-boards", action="store_true")
    ap.add_argument("--prefix", default="depbench", help="board names: PREFIX0, PREFIX1, …")
    ap.add_argument("--skip-linkcut", action="store_true")
    ap.add_argument("--only-upload", action="store_true", help="only the upload-vs-scp comparison (one board)")
    args = ap.parse_args()
    from edgepack.boards import board

    if args.only_upload:
        args.boards = 1
    names = [f"{args.prefix}{i}" for i in range(args.boards)]
    out: dict[str, Any] = {
        "boards": args.boards,
        "cpu": args.cpu,
        "cores": os.cpu_count(),
        "sections": "upload only" if args.only_upload else "all",
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }
    work = Path(tempfile.mkdtemp(prefix="deploybench-"))
    try:
        t0 = time.monotonic()
        targets = boards_up(names, args.cpu)
        out["boards_up_seconds"] = round(time.monotonic() - t0, 1)
        size = int(args.size_mb * 1e6)
        b1 = make_bundle(work / "b1.edgepack", args.profile, size, "b1")
        out["bundle_bytes"] = b1.size

        # 1. upload phase vs scp, alternating on board 0 so both see the same machine load.
        first = targets[0]
        tiny = work / "tiny.bin"
        tiny.write_bytes(b"x")
        out["upload_vs_scp_note"] = (
            "ratio_strict_vs_scp_wire = (scp wall - 1-byte scp wall) / upload phase: throughput on the wire, scp's "
            "connect/handshake/remote start removed, ours still paying for opening a channel and starting `cat`; "
            "ratio_strict_vs_scp_wire_ssh_true: the same with `ssh board true` as scp's fixed cost; "
            "ratio_vs_scp_wall = scp wall / upload phase. Medians over reps, ours and scp alternated (ABBA) on the "
            "same board. Both go through the board's emulated sshd, each with its client's default cipher. The "
            "machine's other load (shared cores) is in load_avg; compare only figures from the same run."
        )
        out["upload_vs_scp"] = upload_vs_scp(first, b1, args.reps, tiny)
        if args.big_mb > 0:
            big_b = make_bundle(work / "upload-big.edgepack", args.profile, int(args.big_mb * 1e6), "ub")
            out["upload_vs_scp_big"] = upload_vs_scp(first, big_b, args.reps, tiny)
            big_b.path.unlink()
            big_b.path.with_suffix(".bin").unlink()

        if not args.only_upload:
            more_sections(args, out, targets, b1, work)
    except EdgepackError as e:
        out["error"] = str(e)
        print(json.dumps(out, indent=2))
        return 1
    finally:
        if not args.keep_boards:
            for n in names:
                try:
                    board.down(n)
                except EdgepackError:
                    pass
    out["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
