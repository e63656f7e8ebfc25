#!/usr/bin/env bash
# Build the Docker image from ./Dockerfile with buildah (no Docker engine needed) and use it as a
# user would: inside the container, as the non-root user, with the shared scenes mounted
# read-only, run
#   1. ssdiff --version
#   2. ssdiff models list            (must list every model shipped in ssdiff_cli/models)
#   3. ssdiff sharpen                (default method, on a shared scene a shipped model fits:
#                                     must run a shipped model and write a COG)
#   4. SIGTERM to the container's init (tini), as `docker stop` sends it, during a sharpen:
#      ssdiff must exit 143 within $SMOKE_STOP_TIMEOUT s (default 60) and leave nothing in the
#      output folder.
# Then, unless SMOKE_REBUILD=0, it rebuilds after a code change and checks that the PyTorch and
# dependency layers come from the cache.
#
# Needs root (buildah with chroot isolation), apt (buildah and debootstrap are installed when
# missing) and the shared scenes (../shared/data, or $SSDIFF_TEST_DATA). Takes about 10 minutes
# the first time on a 2-core machine (most of it the sharpen runs), less when the stand-in base
# and the layers are cached.
#
# How the build is set up here, all read from this machine at run time (no host name is written
# in the repository):
# * Base image: `python:3.11-slim` cannot be pulled here, so a `debootstrap --variant=minbase
#   bookworm` root with python3 and venv (the mirror taken from this machine's apt sources),
#   imported with `buildah from scratch`, stands in for it (--build-arg BASE_IMAGE). It is cached
#   in $SMOKE_CACHE and as the image localhost/ssdiff-standin-base:bookworm.
# * Packages: the build uses the indexes, wheel folders and CA bundle of this machine's pip
#   configuration (`pip config list`): index URLs are passed on in a pip.conf mounted into the
#   build, local folders are mounted read-only at the same paths, the CA bundle read-only. Torch
#   comes from TORCH_INDEX_URL if set, else the configured index-url if there is one, else a
#   configured wheel folder holding torch-$TORCH_VERSION (given as the `wheels` build context).
#
# Environment: SSDIFF_TEST_DATA (scenes), SMOKE_CACHE (default /var/tmp/ssdiff-smoke),
# SMOKE_IMAGE (default localhost/ssdiff:smoke), SMOKE_SCENE (default ge1_grip), TORCH_VERSION,
# TORCH_INDEX_URL, SMOKE_STOP_TIMEOUT (default 60), SMOKE_REBUILD (default 1), SMOKE_KEEP (1: keep
# the image; default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DATA=${SSDIFF_TEST_DATA:-$ROOT/../shared/data}
CACHE=${SMOKE_CACHE:-/var/tmp/ssdiff-smoke}
IMAGE=${SMOKE_IMAGE:-localhost/ssdiff:smoke}
BASE=localhost/ssdiff-standin-base:bookworm
SCENE=${SMOKE_SCENE:-ge1_grip}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
USER_SPEC=1000:1000   # the image's non-root user (Dockerfile: useradd --uid 1000)
ISO=(--isolation chroot)
FORMAT=(--format docker)   # Docker's image format: keeps SHELL, as `docker build` does

say() { printf '\n== %s\n' "$*" >&2; }
fail() { printf 'docker_smoke: FAIL: %s\n' "$*" >&2; exit 1; }
FAILED=()   # checks that failed but let the later ones run

[ "$(id -u)" = 0 ] || fail "run as root (buildah with --isolation chroot)"
[ -f "$DATA/$SCENE/pan.tif" ] || fail "shared scenes not found at $DATA (set SSDIFF_TEST_DATA)"

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    say "installing buildah and debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null
fi

WORK=$(mktemp -d /tmp/ssdiff-smoke.XXXXXX)
CONTAINERS=()
cleanup() {
    local c
    for c in "${CONTAINERS[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- the stand-in base image
apt_mirror() {
    # The Debian mirrors for bookworm in this machine's apt sources (deb822 or one-line format,
    # either or both, under $APT_ETC, default /etc/apt), one a line. Succeeds whichever files
    # are missing: under pipefail, a failing cat of an absent sources.list ended the script.
    local f etc=${APT_ETC:-/etc/apt}
    local lists=()
    for f in "$etc"/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^[[:space:]]*$/{u=""} /^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="bookworm" && u!=""){print u; exit}}' "$f"
    done
    for f in "$etc"/sources.list "$etc"/sources.list.d/*.list; do
        [ -f "$f" ] && lists+=("$f")
    done
    if [ ${#lists[@]} -gt 0 ]; then
        awk '$1=="deb" {for(i=2;i<=NF;i++) if($i ~ /^[a-z]+:\/\//){ if($(i+1)=="bookworm") print $i; break}}' \
            "${lists[@]}"
    fi
    return 0
}

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    MIRROR=$(apt_mirror)
    MIRROR=${MIRROR%%$'\n'*}  # the first (no pipe into head: pipefail and SIGPIPE)
    [ -n "$MIRROR" ] || fail "no bookworm mirror in this machine's apt sources"
    if [ ! -x "$CACHE/rootfs/usr/bin/python3" ]; then
        say "debootstrap --variant=minbase bookworm from $MIRROR"
        mkdir -p "$CACHE"
        rm -rf "$CACHE/rootfs.tmp"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$CACHE/rootfs.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
            || fail "debootstrap failed, see $CACHE/debootstrap.log"
        mv "$CACHE/rootfs.tmp" "$CACHE/rootfs"
    fi
    say "importing the root file system as $BASE"
    tar -C "$CACHE/rootfs" -cf "$WORK/rootfs.tar" .
    ctr=$(buildah from scratch)
    CONTAINERS+=("$ctr")
    buildah add "$ctr" "$WORK/rootfs.tar" / >/dev/null
    rm -f "$WORK/rootfs.tar"
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 "$ctr"
    buildah commit -q "$ctr" "$BASE" >/dev/null
fi

# ---------------------------------------------------------------- pip settings for the build
PIPCONF=$(python3 -m pip config list 2>/dev/null || true)
pip_setting() {
    # Values of one pip setting (any scope; the environment's wins), split on whitespace.
    printf '%s\n' "$PIPCONF" | awk -F= -v key="$1" '
        { k=$1; sub(/^[^.]*\./, "", k) }
        k==key { v=substr($0, index($0, "=")+1); gsub(/^'"'"'|'"'"'$/, "", v); vals[$1 ~ /^:env:/] = v }
        END { if (1 in vals) print vals[1]; else if (0 in vals) print vals[0] }' | tr ' ' '\n' | sed '/^$/d'
}
INDEX_URL=$(pip_setting index-url | head -n 1)
mapfile -t EXTRA_INDEX < <(pip_setting extra-index-url)
mapfile -t FIND_LINKS < <(pip_setting find-links)
CERT=$(pip_setting cert | head -n 1)
[ -n "$CERT" ] || CERT=/etc/ssl/certs/ca-certificates.crt
[ -f "$CERT" ] || fail "no CA bundle at $CERT"

MOUNTS=(-v "$CERT:/etc/ssl/certs/ca-certificates.crt:ro")
local_path() { case "$1" in file://*) printf '%s\n' "${1#file://}" ;; /*) printf '%s\n' "$1" ;; esac; }
mount_local() {
    # $1: a local folder (find-links) or a file:// index, whose files may lie beside its
    # simple/ folder (relative links), so its parent is mounted.
    local p
    p=$(local_path "$1")
    [ -n "$p" ] || return 0
    case "$1" in file://*) p=$(dirname "${p%/}") ;; esac
    if [ -d "$p" ]; then MOUNTS+=(-v "$p:$p:ro"); fi
}
{
    echo "[global]"
    echo "cert = /etc/ssl/certs/ca-certificates.crt"
    [ -n "$INDEX_URL" ] && echo "index-url = $INDEX_URL"
    [ ${#EXTRA_INDEX[@]} -gt 0 ] && echo "extra-index-url = ${EXTRA_INDEX[*]}"
    [ ${#FIND_LINKS[@]} -gt 0 ] && echo "find-links = ${FIND_LINKS[*]}"
    true
} >"$WORK/pip.conf"
MOUNTS+=(-v "$WORK/pip.conf:/etc/pip.conf:ro")
for u in "$INDEX_URL" "${EXTRA_INDEX[@]}"; do
    if [ -n "$u" ]; then mount_local "$u"; fi
done
for u in "${FIND_LINKS[@]}"; do
    p=$(local_path "$u")
    if [ -n "$p" ] && [ -d "$p" ]; then MOUNTS+=(-v "$p:$p:ro"); fi
done

BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE" --build-arg "TORCH_VERSION=$TORCH_VERSION")
WHEELS=""
for u in "${FIND_LINKS[@]}"; do
    p=$(local_path "$u")
    if [ -n "$p" ] && compgen -G "$p/torch-${TORCH_VERSION}[+-]*.whl" >/dev/null; then WHEELS=$p; break; fi
done
if [ -n "${TORCH_INDEX_URL+set}" ]; then
    TORCH_FROM=${TORCH_INDEX_URL:-the wheel folder}
elif [ -n "$INDEX_URL" ]; then
    TORCH_INDEX_URL=$INDEX_URL; TORCH_FROM=$INDEX_URL
elif [ -n "$WHEELS" ]; then
    TORCH_INDEX_URL=""; TORCH_FROM="wheel folder $WHEELS"
else
    fail "pip's configuration names neither an index-url nor a wheel folder with torch-$TORCH_VERSION; set TORCH_INDEX_URL"
fi
BUILD_ARGS+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
[ -n "$WHEELS" ] && BUILD_ARGS+=(--build-context "wheels=$WHEELS")

# ---------------------------------------------------------------- build
say "building $IMAGE (torch $TORCH_VERSION from $TORCH_FROM)"
t0=$(date +%s)
buildah bud "${ISO[@]}" "${FORMAT[@]}" --layers --force-rm "${BUILD_ARGS[@]}" "${MOUNTS[@]}" -t "$IMAGE" -f Dockerfile . \
    >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; fail "image build failed"; }
BUILD_S=$(( $(date +%s) - t0 ))
SIZE=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n 1)
echo "built $IMAGE in ${BUILD_S} s; image size $SIZE" >&2

image_config() {  # one field of the image's configuration (a list: one item a line)
    buildah inspect --type image "$IMAGE" | python3 -c '
import json, sys
value = json.load(sys.stdin)["OCIv1"]["config"].get(sys.argv[1]) or ""
print("\n".join(value) if isinstance(value, list) else value)' "$1"
}
mapfile -t ENTRY < <(image_config Entrypoint)
[ "${ENTRY[0]:-}" = tini ] || fail "the image's entry point does not start with tini: ${ENTRY[*]}"
IMG_USER=$(image_config User)
[ "$IMG_USER" = "$USER_SPEC" ] || fail "image user is '$IMG_USER', expected $USER_SPEC"

OUT=$WORK/out
mkdir -p "$OUT"
chown "$USER_SPEC" "$OUT"
CTR=$(buildah from "$IMAGE")
CONTAINERS+=("$CTR")
# buildah's chroot isolation has no PID namespace, so tini is not PID 1 here: let it register as
# a subreaper instead (silences its warning; signal forwarding is the same)
buildah config --env TINI_SUBREAPER=1 "$CTR"
run_ssdiff() {
    # The image's entry point (tini -- ssdiff) with arguments, as the non-root user, the scenes
    # read-only at /shared and a writable /out.
    buildah run "${ISO[@]}" --user "$USER_SPEC" -v "$DATA:/shared:ro" -v "$OUT:/out" \
        "$CTR" -- "${ENTRY[@]}" "$@"
}

# ---------------------------------------------------------------- 1. --version
say "ssdiff --version"
VERSION_OUT=$(run_ssdiff --version)
echo "$VERSION_OUT"
WANT=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
[ "$VERSION_OUT" = "ssdiff $WANT" ] || fail "--version printed '$VERSION_OUT', expected 'ssdiff $WANT'"

# ---------------------------------------------------------------- 2. models list
say "ssdiff models list"
run_ssdiff models list
run_ssdiff models list --json >"$WORK/models.json"
for card in ssdiff_cli/models/*.json; do
    name=$(basename "$card" .json)
    [ -f "ssdiff_cli/models/$name.safetensors" ] || continue
    python3 -c 'import json, sys; names = [m["name"] for m in json.load(open(sys.argv[1]))["models"]]; sys.exit(sys.argv[2] not in names)' \
        "$WORK/models.json" "$name" || fail "models list in the image lacks the shipped model $name"
done

# ---------------------------------------------------------------- 3. sharpen, default method
say "ssdiff sharpen (default method) on $SCENE"
t0=$(date +%s)
run_ssdiff sharpen "/shared/$SCENE/pan.tif" "/shared/$SCENE/ms.tif" -o /out/sharpened.tif --json -q \
    >"$WORK/sharpen.json"
echo "sharpen took $(( $(date +%s) - t0 )) s" >&2
python3 - "$WORK/sharpen.json" <<'EOF' || fail "default sharpen did not use a shipped model"
import json, sys
report = json.load(open(sys.argv[1]))
method = report["method"]
# a model's own self-check (auto's guard) may hand the scene to its classical base: the model
# was still found and run
ran = method if method.get("model") else method.get("fallback_from") or {}
print(f"method {method['name']}, model {ran.get('model')}, {report['tiles']} tiles, "
      f"{report['seconds']:.1f} s, output {report['output']}")
sys.exit(not (ran.get("name") == "ssdiff" and ran.get("model")))
EOF
[ -s "$OUT/sharpened.tif" ] || fail "no output written"
[ "$(stat -c %u "$OUT/sharpened.tif")" = "${USER_SPEC%%:*}" ] || fail "output not owned by the container's user"
buildah run "${ISO[@]}" --user "$USER_SPEC" -v "$OUT:/out:ro" "$CTR" -- python3 -c '
import rasterio
with rasterio.open("/out/sharpened.tif") as d:
    a = d.read(1, masked=True)
    print(f"output: {d.width}x{d.height}, {d.count} bands, {d.dtypes[0]}, band 1 range {a.min()}..{a.max()}")
    assert d.count >= 1 and a.max() > a.min()
' || fail "the output does not open as a raster with varying values"
LEFT=$(find "$OUT" -mindepth 1 ! -name sharpened.tif)
[ -z "$LEFT" ] || fail "files left beside the output: $LEFT"
rm -f "$OUT/sharpened.tif"

# ---------------------------------------------------------------- 4. SIGTERM, as docker stop
say "SIGTERM to tini during a sharpen"
descendant_named() {
    # First descendant of process $1 whose command name is $2.
    ps -e -o pid=,ppid=,comm= | awk -v root="$1" -v name="$2" '
        { parent[$1] = $2; comm[$1] = $3; order[NR] = $1 }
        END {
            for (i = 1; i <= NR; i++) {
                p = order[i]; q = p
                while (q in parent && q != root && q > 1) q = parent[q]
                if (q == root && comm[p] == name && p != root) { print p; exit }
            }
        }'
}
# small tiles: the run is longer, and a tile in flight when the signal comes ends soon
run_ssdiff sharpen "/shared/$SCENE/pan.tif" "/shared/$SCENE/ms.tif" -o /out/stopped.tif \
    --method ssdiff --tile-size 256 -q >"$WORK/term.log" 2>&1 &
RUN_PID=$!
for _ in $(seq 1 300); do   # until ssdiff has started writing (its hidden work file exists)
    compgen -G "$OUT/.stopped.tif.*" >/dev/null && break
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 1
done
compgen -G "$OUT/.stopped.tif.*" >/dev/null || { kill "$RUN_PID" 2>/dev/null; fail "the long sharpen never started writing"; }
sleep 2
TINI=$(descendant_named "$RUN_PID" tini)
[ -n "$TINI" ] || fail "no tini process under the container run"
kill -TERM "$TINI"
t0=$(date +%s)
# `docker stop` sends SIGKILL after its grace period (-t, default 10 s); allow more here, on a
# busy machine, but not forever
STOP_TIMEOUT=${SMOKE_STOP_TIMEOUT:-60}
while kill -0 "$RUN_PID" 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt "$STOP_TIMEOUT" ]; do sleep 1; done
KILLED=0
if kill -0 "$RUN_PID" 2>/dev/null; then
    KILLED=1
    echo "still running ${STOP_TIMEOUT} s after SIGTERM: SIGKILL, as docker stop would" >&2
    kill -KILL "$TINI" "$(descendant_named "$RUN_PID" ssdiff)" 2>/dev/null || true
fi
set +e
wait "$RUN_PID"
RC=$?
set -e
echo "exit status $RC, $(( $(date +%s) - t0 )) s after SIGTERM" >&2
cat "$WORK/term.log" >&2
LEFT=$(find "$OUT" -mindepth 1)
TERM_OK=1
[ "$KILLED" = 0 ] || TERM_OK=0
[ "$RC" = 143 ] || { TERM_OK=0; echo "expected exit status 143 (SIGTERM), got $RC" >&2; }
[ -z "$LEFT" ] || { TERM_OK=0; printf 'left behind after SIGTERM:\n%s\n' "$LEFT" >&2; }
if [ "$TERM_OK" = 1 ]; then
    echo "SIGTERM: exit 143, nothing left behind" >&2
else
    FAILED+=("SIGTERM did not end ssdiff cleanly (exit 143, nothing left behind)")
fi
find "$OUT" -mindepth 1 -delete

# ---------------------------------------------------------------- 5. a code change keeps torch cached
if [ "${SMOKE_REBUILD:-1}" = 1 ]; then
    say "rebuild after a code change: torch and dependency layers must come from the cache"
    mkdir -p "$WORK/ctx"
    cp -r Dockerfile .dockerignore pyproject.toml README.md ssdiff_cli "$WORK/ctx/"
    echo "# smoke: a code change" >>"$WORK/ctx/ssdiff_cli/__init__.py"
    t0=$(date +%s)
    buildah bud "${ISO[@]}" "${FORMAT[@]}" --layers --force-rm "${BUILD_ARGS[@]}" "${MOUNTS[@]}" -t "$IMAGE-rebuild" \
        -f "$WORK/ctx/Dockerfile" "$WORK/ctx" >"$WORK/rebuild.log" 2>&1 \
        || { tail -n 40 "$WORK/rebuild.log" >&2; fail "rebuild failed"; }
    echo "rebuilt in $(( $(date +%s) - t0 )) s" >&2
    # the steps up to the dependency install are cached, the code step is not
    python3 - "$WORK/rebuild.log" <<'EOF' || fail "a code change re-ran the torch or dependency step"
import re, sys
steps, current = {}, None
for line in open(sys.argv[1]):
    m = re.match(r"(?:\[\d+/\d+\] )?STEP \d+/\d+: (.*)", line)
    if m:
        current = m.group(1)
        steps[current] = False
    elif current and line.startswith("--> Using cache"):
        steps[current] = True
torch = [s for s in steps if "torch==" in s]
deps = [s for s in steps if "requirements.txt" in s]
code = [s for s in steps if "--no-deps" in s]
print(f"torch step cached: {[steps[s] for s in torch]}, dependency step cached: "
      f"{[steps[s] for s in deps]}, code step cached: {[steps[s] for s in code]}")
sys.exit(not (torch and deps and code and all(steps[s] for s in torch + deps)
              and not any(steps[s] for s in code)))
EOF
    buildah rmi "$IMAGE-rebuild" >/dev/null 2>&1 || true
fi

[ "${SMOKE_KEEP:-1}" = 1 ] || buildah rmi "$IMAGE" >/dev/null 2>&1 || true
if [ ${#FAILED[@]} -gt 0 ]; then
    printf 'docker_smoke: FAIL: %s\n' "${FAILED[@]}" >&2
    exit 1
fi
echo "docker_smoke: PASS (build ${BUILD_S} s, image $SIZE)"
