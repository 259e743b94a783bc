#!/bin/sh
# Runs inside the fresh trixie chroot (as root) to turn it into the ORT build environment.
# Kept as one script so a cold environment is made the same way every time; buildenv.py runs it.
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
MIRROR="${1:-http://deb.debian.org/debian}"
cat > /etc/apt/sources.list <<LIST
deb $MIRROR trixie main
deb-src $MIRROR trixie main
LIST
# Docs and man pages are dead weight in a build environment.
cat > /etc/dpkg/dpkg.cfg.d/01-edgepack-nodoc <<CFG
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/locale/*
CFG
dpkg --add-architecture arm64
apt-get -q update
echo "edgepack-step: build-dep"
apt-get -q -y build-dep onnxruntime
echo "edgepack-step: python"
apt-get -q -y install --no-install-recommends python3-onnxruntime python3-flatbuffers python3-sympy python3-numpy \
    ninja-build cmake patch xz-utils
echo "edgepack-step: cross"
# Not build-dep -a arm64 (fails on Python deps); not cpuinfo/pthreadpool arm64 or absl/re2 with recommends:
# those replace the native packages the x86_64 build needs.
apt-get -q -y install --no-install-recommends crossbuild-essential-arm64 libprotobuf-dev:arm64 protobuf-compiler \
    libre2-dev:arm64 libabsl-dev:arm64 libboost-dev:arm64 libhowardhinnant-date-dev:arm64 libflatbuffers-dev:arm64 \
    zlib1g-dev:arm64 libmsgsl-dev libsafeint-dev libeigen3-dev nlohmann-json3-dev
apt-get clean
rm -rf /var/lib/apt/lists/*_Sources* 
echo "edgepack-step: done"
