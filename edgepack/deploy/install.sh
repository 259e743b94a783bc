#!/bin/sh
# edgepack bundle installer: POSIX sh, run on the device; needs tar, sha256sum, awk, mv, ln (flock if present).
# No Python needed. The same script ships inside every bundle as `install.sh` and is kept in each release, so
# it can be run by hand or from Ansible:
#
#   sh install.sh BUNDLE.edgepack [--root DIR] [--keep N]   verify and install, make it current
#   sh install.sh --activate ID [--root DIR] [--keep N]     make an installed (intact) release current
#   sh install.sh --rollback [--root DIR]                   switch current back to previous
#   sh install.sh --status [--expect ID] [--root DIR]       JSON: current, previous, releases, healthy
#   sh install.sh --verify ID [--root DIR]                  exit 0 when releases/ID is installed and intact
#
# Layout under ROOT (default ~/edgepack): releases/<id>/, current -> releases/<id> (relative symlink, swapped with
# `mv -T`), previous, state.json, .install.lock. A failed or interrupted install leaves `current` as it was.
# Exit status: 0 ok, 1 bundle refused or release damaged, 2 usage, 3 lock busy or environment problem.
set -eu
umask 022

ROOT=${EDGEPACK_ROOT:-"$HOME/edgepack"}
KEEP=3
MODE=install
BUNDLE=
ID=
LOCK_WAIT=${EDGEPACK_LOCK_WAIT:-120}
NO_VERIFY=
TMP=
LOCKDIR=

fail() { code=$1; shift; echo "install.sh: error: $*" >&2; exit "$code"; }

usage() {  # the usage lines of the header above; on stdout for --help, on stderr for a mistake
    if [ "${1:-2}" = 0 ]; then
        sed -n '6,10p' "$0" 2>/dev/null | sed 's/^# *//' || true
    else
        sed -n '6,10p' "$0" 2>/dev/null | sed 's/^# *//' >&2 || true
    fi
    exit "${1:-2}"
}

# A test hook: EDGEPACK_INSTALL_FAULT=after-extract|before-swap SIGKILLs this script at that point, so the fault
# tests kill the real installer exactly where a power cut would hurt most.
fault_point() {
    if [ "${EDGEPACK_INSTALL_FAULT:-}" = "$1" ]; then kill -KILL $$; fi
}

while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || usage; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --keep) [ $# -ge 2 ] || usage; KEEP=$2; shift 2 ;;
        --keep=*) KEEP=${1#--keep=}; shift ;;
        --rollback) MODE=rollback; shift ;;
        --status) MODE=status; shift ;;
        --no-verify) NO_VERIFY=1; shift ;;
        --expect) [ $# -ge 2 ] || usage; ID=$2; shift 2 ;;
        --verify) [ $# -ge 2 ] || usage; MODE=verify; ID=$2; shift 2 ;;
        --activate) [ $# -ge 2 ] || usage; MODE=activate; ID=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) echo "install.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$BUNDLE" ] || usage; BUNDLE=$1; shift ;;
    esac
done

case $KEEP in ''|*[!0-9]*) fail 2 "--keep needs a number, got '$KEEP'" ;; esac
[ "$KEEP" -ge 1 ] || fail 2 "--keep must be at least 1"
case $ROOT in /*) ;; *) ROOT=$(pwd)/$ROOT ;; esac
if [ "$MODE" = install ]; then
    [ -n "$BUNDLE" ] || usage
    case $BUNDLE in /*) ;; *) BUNDLE=$(pwd)/$BUNDLE ;; esac
    [ -f "$BUNDLE" ] || fail 2 "bundle $BUNDLE does not exist"
fi
if [ -n "$ID" ]; then
    case $ID in *[!0-9a-f]*|'') fail 2 "'$ID' is not a bundle id (hex)" ;; esac
fi
for tool in tar sha256sum awk; do
    command -v "$tool" >/dev/null 2>&1 || fail 3 "'$tool' is missing on this device"
done

cleanup() {
    [ -z "$TMP" ] || rm -rf "$TMP"
    [ -z "$LOCKDIR" ] || rm -rf "$LOCKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

lock() {
    mkdir -p "$ROOT/releases" "$ROOT/incoming"
    if command -v flock >/dev/null 2>&1; then
        # flock: the kernel drops the lock when we die, even by SIGKILL.
        exec 9>>"$ROOT/.install.lock"
        flock -w "$LOCK_WAIT" 9 || fail 3 "another install holds $ROOT/.install.lock (waited ${LOCK_WAIT} s)"
    else
        waited=0
        while ! mkdir "$ROOT/.install.lock.d" 2>/dev/null; do
            pid=$(cat "$ROOT/.install.lock.d/pid" 2>/dev/null || true)
            if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
                rm -rf "$ROOT/.install.lock.d"  # its owner died without cleaning up
                continue
            fi
            waited=$((waited + 1))
            [ "$waited" -lt "$LOCK_WAIT" ] || fail 3 "another install holds $ROOT/.install.lock.d"
            sleep 1
        done
        LOCKDIR="$ROOT/.install.lock.d"
        echo $$ >"$LOCKDIR/pid"
    fi
    # We hold the lock, so leftovers of killed runs can go: half-extracted releases and temp links.
    rm -rf "$ROOT"/releases/*.partial "$ROOT"/releases/*.broken.* "$ROOT"/incoming/.install.*
    rm -f "$ROOT"/.current.new.* "$ROOT"/.previous.new.* "$ROOT"/state.json.tmp.*
}

link_id() {  # the release id a link (current/previous) points at, or nothing
    t=$(readlink "$ROOT/$1" 2>/dev/null || true)
    t=${t#releases/}
    case $t in ''|*[!0-9a-f]*) ;; *) echo "$t" ;; esac
}

verify_release() {  # intact: every file listed at install time still has its hash
    [ -n "$1" ] && [ -d "$ROOT/releases/$1" ] && [ -f "$ROOT/releases/$1/.edgepack/sha256sums" ] || return 1
    (cd "$ROOT/releases/$1" && sha256sum -c .edgepack/sha256sums >/dev/null 2>&1)
}

releases() {  # newest first (activation touches the release directory)
    ls -1t "$ROOT/releases" 2>/dev/null | while IFS= read -r r; do
        case $r in *[!0-9a-f]*) ;; *) [ -d "$ROOT/releases/$r" ] && echo "$r" ;; esac
    done
}

json_list() {
    first=1
    printf '['
    for r in $1; do
        if [ $first = 1 ]; then first=0; else printf ', '; fi
        printf '"%s"' "$r"
    done
    printf ']'
}

json_str() { if [ -n "$1" ]; then printf '"%s"' "$1"; else printf 'null'; fi; }

write_state() {
    # sh has no local variables: ws_* names keep callers' variables intact.
    ws_cur=$(link_id current)
    ws_prev=$(link_id previous)
    ws_tmp="$ROOT/state.json.tmp.$$"
    {
        printf '{\n  "current": %s,\n  "previous": %s,\n' "$(json_str "$ws_cur")" "$(json_str "$ws_prev")"
        printf '  "releases": %s,\n' "$(json_list "$(releases)")"
        printf '  "installed_at": "%s",\n  "installer": "edgepack-install/1"\n}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$ws_tmp"
    mv -f "$ws_tmp" "$ROOT/state.json"
}

swap_link() {  # atomically point $ROOT/$1 at releases/$2: make a new link, rename it over the old one
    new="$ROOT/.$1.new.$$"
    rm -f "$new"
    ln -s "releases/$2" "$new"
    if ! mv -T "$new" "$ROOT/$1" 2>/dev/null; then
        # No `mv -T` (old busybox): ln -sfn is not atomic, but it is the best this device offers.
        rm -f "$new"
        ln -sfn "releases/$2" "$ROOT/$1"
    fi
}

prune() {  # keep the KEEP newest releases, and always current and previous
    pr_cur=$(link_id current)
    pr_prev=$(link_id previous)
    n=0
    for r in $(releases); do
        if [ "$r" = "$pr_cur" ] || [ "$r" = "$pr_prev" ]; then n=$((n + 1)); continue; fi
        if [ "$n" -lt "$KEEP" ]; then n=$((n + 1)); continue; fi
        rm -rf "$ROOT/releases/$r"
    done
}

activate() {  # $2 = "fresh": just extracted and verified, so hashing it again would only cost time
    if [ "${2:-}" != fresh ]; then
        verify_release "$1" || fail 1 "release $1 is not installed or is damaged under $ROOT/releases"
    fi
    old=$(link_id current)
    touch "$ROOT/releases/$1"
    if [ "$old" != "$1" ]; then
        swap_link current "$1"
        if [ -n "$old" ] && [ -d "$ROOT/releases/$old" ]; then swap_link previous "$old"; fi
    fi
    write_state
    prune
    write_state
}

# Manifest parsing without Python: manifest.json is written with indent=2 and sort_keys, so `files` is a
# top-level key whose entries are `"path": {` / `"sha256": "…"` / `"size": N` / `}` lines. Anything else there
# means the manifest was not written by edgepack and is refused.
manifest_sums() {
    awk '
        BEGIN { state = 0; bad = 0; n = 0; path = ""; sha = "" }
        state == 0 && /^  "files": [{]$/ { state = 1; next }
        state == 1 && /^  [}],?$/ { state = 2; next }
        state == 1 {
            if ($0 ~ /^    "[^"\\]+": [{]$/) { path = $0; sub(/^    "/, "", path); sub(/": [{]$/, "", path); next }
            if ($0 ~ /^      "sha256": "[0-9a-f]+",?$/) { sha = $0; sub(/^      "sha256": "/, "", sha); sub(/",?$/, "", sha); next }
            if ($0 ~ /^      "size": [0-9]+,?$/) { next }
            if ($0 ~ /^    [}],?$/) {
                if (path == "" || length(sha) != 64) bad = 1
                print sha "  " path; n++; path = ""; sha = ""; next
            }
            bad = 1
        }
        END { if (bad || state != 2 || n == 0) exit 1 }
    ' "$1"
}

manifest_id() {
    sed -n 's/^  "id": "\([0-9a-f][0-9a-f]*\)",\{0,1\}$/\1/p' "$1" | head -n 1
}

check_paths() {  # every member path: relative, no '..' or '.', safe characters, not our own metadata
    while IFS= read -r p; do
        case $p in
            ''|/*|*//*|*/) fail 1 "refusing member '$p': absolute or empty path component" ;;
            *[!A-Za-z0-9._/+@=-]*) fail 1 "refusing member '$p': unexpected characters in the path" ;;
            .edgepack/*|manifest.json) fail 1 "refusing member '$p': reserved name" ;;
        esac
        case /$p/ in */../*|*/./*) fail 1 "refusing member '$p': '..' or '.' in the path" ;; esac
    done
}

install_bundle() {
    lock
    TMP="$ROOT/incoming/.install.$$"
    mkdir -p "$TMP"
    # The member list must be exactly manifest.json + the manifest's files, all plain files, no duplicates.
    tar -tf "$BUNDLE" >"$TMP/names" 2>"$TMP/err" \
        || fail 1 "$BUNDLE is truncated or not a tar file ($(tail -n 1 "$TMP/err"))"
    [ "$(head -n 1 "$TMP/names")" = manifest.json ] || fail 1 "$BUNDLE: manifest.json is not the first member"
    tar -xOf "$BUNDLE" manifest.json >"$TMP/manifest.json" || fail 1 "$BUNDLE: cannot read manifest.json"
    id=$(manifest_id "$TMP/manifest.json")
    [ -n "$id" ] || fail 1 "$BUNDLE: manifest.json has no bundle id"
    manifest_sums "$TMP/manifest.json" >"$TMP/sums" || fail 1 "$BUNDLE: manifest.json 'files' cannot be read"
    sed 's/^[0-9a-f]*  //' "$TMP/sums" >"$TMP/listed"
    check_paths <"$TMP/listed"
    if [ -n "$(sort "$TMP/names" | uniq -d)" ]; then fail 1 "$BUNDLE has duplicate members"; fi
    { echo manifest.json; cat "$TMP/listed"; } | sort >"$TMP/want"
    sort "$TMP/names" >"$TMP/have"
    if ! cmp -s "$TMP/want" "$TMP/have"; then
        extra=$(comm -13 "$TMP/want" "$TMP/have" | head -n 1)
        missing=$(comm -23 "$TMP/want" "$TMP/have" | head -n 1)
        fail 1 "$BUNDLE: members do not match the manifest (unlisted: '${extra}', missing: '${missing}')"
    fi
    tar -tvf "$BUNDLE" >"$TMP/long" 2>/dev/null || fail 1 "$BUNDLE is truncated or not a tar file"
    odd=$(awk '$1 !~ /^-[r-][w-][x-][r-][w-][x-][r-][w-][x-]$/ { print; exit }' "$TMP/long")
    [ -z "$odd" ] || fail 1 "refusing member that is not a plain file: $odd"

    rel="$ROOT/releases/$id"
    fresh=
    if verify_release "$id"; then
        : # already installed and intact: only switch to it
    else
        fresh=fresh
        part="$rel.partial"
        rm -rf "$part"
        mkdir -p "$part"
        tar -xof "$BUNDLE" -C "$part" 2>"$TMP/err" || fail 1 "extracting $BUNDLE failed: $(tail -n 1 "$TMP/err")"
        odd=$(cd "$part" && find . ! -type f ! -type d | head -n 1)
        [ -z "$odd" ] || fail 1 "refusing bundle: '$odd' is not a plain file after extraction"
        mkdir -p "$part/.edgepack"
        cp "$TMP/sums" "$part/.edgepack/sha256sums"
        if ! (cd "$part" && sha256sum -c .edgepack/sha256sums >"$TMP/check" 2>/dev/null); then
            bad=$(grep -v ': OK$' "$TMP/check" | head -n 1)
            fail 1 "member hash mismatch, bundle refused: ${bad:-see sha256sum -c}"
        fi
        sync
        fault_point after-extract
        if [ -d "$rel" ]; then mv "$rel" "$rel.broken.$$"; fi  # a damaged earlier copy of the same id
        mv "$part" "$rel"
        rm -rf "$rel.broken.$$"
    fi
    fault_point before-swap
    activate "$id" $fresh
    sync
    echo "installed $id"
}

case $MODE in
    install) install_bundle ;;
    activate) lock; activate "$ID"; sync; echo "activated $ID" ;;
    verify)
        if verify_release "$ID"; then echo intact; else echo "release $ID is not installed or damaged" >&2; exit 1; fi ;;
    rollback)
        lock
        cur=$(link_id current)
        prev=$(link_id previous)
        [ -n "$prev" ] && [ -d "$ROOT/releases/$prev" ] || fail 1 "nothing to roll back to under $ROOT (no previous)"
        verify_release "$prev" || fail 1 "previous release $prev is damaged; not rolling back to it"
        swap_link current "$prev"
        if [ -n "$cur" ] && [ -d "$ROOT/releases/$cur" ]; then swap_link previous "$cur"; fi
        touch "$ROOT/releases/$prev"
        write_state
        sync
        echo "rolled back to $prev" ;;
    status)
        cur=$(link_id current)
        prev=$(link_id previous)
        healthy=false
        # --expect ID: hash the current release only when it is ID (the deployer's "unchanged?" question).
        if [ -n "$NO_VERIFY" ] || { [ -n "$ID" ] && [ "$cur" != "$ID" ]; }; then healthy=null; elif [ -n "$cur" ] && verify_release "$cur"; then healthy=true; fi
        printf '{"current": %s, "previous": %s, "releases": %s, "healthy": %s}\n' "$(json_str "$cur")" \
            "$(json_str "$prev")" "$(json_list "$(releases)")" "$healthy" ;;
esac
