"""edgepack runtime build --profile NAME --model MODEL_OR_BUNDLE [-o DIR]  (owned by the minimal-ORT work)"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("runtime", help="build a reduced-operator minimal ONNX Runtime for a profile")
    ps = p.add_subparsers(dest="runtime_command", metavar="ACTION")
    ps.required = True
    b = ps.add_parser("build", help="build a minimal ORT for the model's operators")
    b.add_argument("--profile", required=True)
    b.add_argument("--model", required=True, help=".onnx model or .edgepack bundle")
    b.add_argument("-o", "--output", help="folder to copy the library into")
    b.add_argument("--ort-source", help="your own ONNX Runtime source checkout (default: Debian's 1.21 sources)")
    b.add_argument("--rebuild", action="store_true", help="drop the cached library for this model and build anew")
    b.add_argument("--reuse", help="a folder from an earlier 'runtime build -o': check it covers the model, no build")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from edgepack.cli.render import console, print_json, progress
    from edgepack.paths import cache_dir
    from edgepack.profiles import load
    from edgepack.runtime.minimal import provide
    from edgepack.runtime.minimal.build import check_arch
    from edgepack.runtime.minimal.inputs import model_and_inputs

    profile = load(args.profile)
    check_arch(profile.device.arch)  # before anything else: no toolchain, no point reading the model
    tmp_root = cache_dir() / "ort-build" / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="runtime-build-", dir=tmp_root) as tmp:
        work = Path(tmp)
        model, inputs = model_and_inputs(Path(args.model), work / "model")
        with progress(not args.json) as prog:
            built = provide(
                profile,
                model,
                work,
                progress=prog,
                inputs=inputs,
                ort_source=Path(args.ort_source) if args.ort_source else None,
                rebuild=args.rebuild,
                reuse=Path(args.reuse) if args.reuse else None,
            )
        doc = built.as_dict()
        if args.output:
            out = Path(args.output)
            out.mkdir(parents=True, exist_ok=True)
            for f in [built.library, *built.extra_libs, built.required_operators, built.ort_model]:
                shutil.copyfile(f, out / f.name)
            doc["output"] = str(out)
            doc["ort_model"] = str(out / built.ort_model.name)
            doc["required_operators"] = str(out / built.required_operators.name)
    if args.json:
        print_json(doc)
        return 0
    c = console()

    def say(text: str) -> None:
        c.print(text, soft_wrap=True)  # paths stay on one line (copyable)

    v = built.verification
    how = "from the cache" if built.cached else f"built in {_dur(built.timings.get('build', 0))}"
    say(f"minimal ONNX Runtime {built.ort_version} for {built.arch} ({how})")
    say(f"  library   {built.library}  {built.library.stat().st_size:,} B")
    extras = ", ".join(f"{p.name} {p.stat().st_size:,} B" for p in built.extra_libs)
    say(f"  ships     {extras or 'nothing else'} beside it; {built.size_bytes:,} B in all")
    n = built.needs
    sys_libs = ", ".join(x for x in n["needed"] if x not in {p.name for p in built.extra_libs})
    say(f"  needs     {sys_libs}; glibc ≥ {n['glibc']}" + (f", GLIBCXX {n['glibcxx']}" if n["glibcxx"] else ""))
    cpu = f", qemu -cpu {v.cpu}" if v.cpu else ""
    say(
        f"  verified  max abs diff {v.max_abs_diff:.3g} vs full ORT {built.ort_version} on {v.samples} samples"
        f" ({v.arch}{cpu}; tolerance {v.tolerance:g})"
    )
    if args.output:
        say(f"  copied to {args.output}")
    return 0


def _dur(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
