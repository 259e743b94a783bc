#!/usr/bin/env bash
# Regenerates edgepack/checks/data/speech_16k.wav: ~4 s of synthesized English speech with pauses, 16 kHz mono 16-bit,
# the built-in representative audio for VAD models (real audio frames; committed so no tool is needed at run time).
set -euo pipefail
out=${1:-edgepack/checks/data/speech_16k.wav}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
espeak-ng -s 150 -w "$tmp/a.wav" "Hello. The device is listening now."
espeak-ng -s 170 -v en-us -w "$tmp/b.wav" "Turn on the kitchen lights, please."
sox -n -r 22050 -c 1 "$tmp/silence.wav" trim 0.0 0.6
sox "$tmp/silence.wav" "$tmp/a.wav" "$tmp/silence.wav" "$tmp/b.wav" "$tmp/silence.wav" -r 16000 -c 1 -b 16 "$out"
