#!/usr/bin/env bash
# The container image of sagad, built and tested with podman.
# Usage: scripts/container.sh COMMAND
#   deps     install podman, runc, debootstrap, catatonit (Debian) if missing
#   base     make the bookworm base image once (debootstrap + podman import)
#   build    build the sagad image (Containerfile) and print its size
#   test     build the image and the tree, start the embedded stack, and run
#            the container tests (ctest -L container, opt-ins included)
#   kube     check deploy/ with podman kube play (the manifests podman runs)
#   podman ARGS...   podman with this project's private configuration
#   clean    remove the image store and the cached base under .run/container
#
# State lives under .run/container (ignored): a private containers.conf and
# storage, and the debootstrap tarball, so the base is made once per machine.
# Environment: SAGA_IMAGE (default localhost/saga/sagad:dev),
# SAGA_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CT_DIR=$SAGA_RUN/container
SAGA_IMAGE=${SAGA_IMAGE:-localhost/saga/sagad:dev}
BASE_IMAGE=localhost/saga/debian-minbase:bookworm
MIRROR=${SAGA_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# podman as this project needs it here: runc, cgroupfs, a file events log
# (no journald, no systemd), generous ulimits, its own storage.
ct_setup() {
  mkdir -p "$CT_DIR"
  cat >"$CT_DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$CT_DIR/events.log"
CONF
  cat >"$CT_DIR/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$CT_DIR/storage"
runroot = "$CT_DIR/runroot"
CONF
  export CONTAINERS_CONF=$CT_DIR/containers.conf
  export CONTAINERS_STORAGE_CONF=$CT_DIR/storage.conf
}
pm() { podman "$@"; }

ct_deps() {
  local missing=() p
  for p in podman runc debootstrap catatonit; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing missing Debian packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} by hand"
    sudo=(sudo)
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install failed for: ${missing[*]}"
}

# can_run: podman starts a container here. Prints the reason when not.
ct_can_run() {
  command -v podman >/dev/null || { echo "podman is not installed (scripts/container.sh deps)"; return 1; }
  [ "$(id -u)" = 0 ] || { echo "not root: the container test runs rootful podman"; return 1; }
  ct_base >/dev/null || { echo "no base image: debootstrap or podman import failed"; return 1; }
  local out
  out=$(pm run --rm --network=host "$BASE_IMAGE" true 2>&1) || {
    echo "podman cannot run a container here: ${out##*$'\n'}"; return 1; }
}

ct_base() {
  pm image exists "$BASE_IMAGE" && return 0
  local tar=$CT_DIR/bookworm-minbase.tar
  if [ ! -s "$tar" ]; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/container.sh deps)"
    local root=$CT_DIR/rootfs
    rm -rf "$root"
    say "debootstrap --variant=minbase bookworm from $MIRROR (once per machine)"
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CT_DIR/debootstrap.log" 2>&1 ||
      die "debootstrap failed (log: $CT_DIR/debootstrap.log)"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$root"
  fi
  say "importing the base image $BASE_IMAGE"
  pm import --quiet "$tar" "$BASE_IMAGE" >/dev/null || die "podman import failed"
}

ct_build() {
  ct_base
  local t0=$SECONDS
  say "building $SAGA_IMAGE"
  pm build --network=host --format docker --layers -f "$SAGA_ROOT/Containerfile" \
    --build-arg BUILD_BASE="$BASE_IMAGE" \
    --build-arg SAGA_VERSION="$(sed -n 's/^project(saga VERSION \([0-9.]*\).*/\1/p' "$SAGA_ROOT/CMakeLists.txt")" \
    --build-arg SAGA_REVISION="$(git -C "$SAGA_ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
    -t "$SAGA_IMAGE" "$SAGA_ROOT" \
    >"$CT_DIR/build.log" 2>&1 || {
    tail -n 40 "$CT_DIR/build.log" >&2
    die "image build failed (log: $CT_DIR/build.log)"
  }
  local size
  size=$(pm image inspect --format '{{.Size}}' "$SAGA_IMAGE")
  say "built $SAGA_IMAGE: $((size / 1024)) KiB in $((SECONDS - t0)) s"
}

ct_setup
cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  deps) ct_deps ;;
  base) ct_base ;;
  build) ct_build ;;
  can-run) ct_can_run ;;
  test)
    # Asked for by name, the opt-in tests run: the host build (for the
    # example participants), the embedded stack (started here unless it
    # already runs, and then stopped again), and ctest's container label.
    ct_deps
    ct_build
    configure_and_build
    start_stack
    cd "$SAGA_BUILD_DIR"
    SAGA_CONTAINER_TESTS=1 ctest --output-on-failure -L container "$@" ;;
  kube) exec bash "$SAGA_ROOT/tests/container/kube_play.sh" "$@" ;;
  podman) exec podman "$@" ;;
  clean)
    pm rmi -a -f >/dev/null 2>&1 || true
    rm -rf "$CT_DIR" ;;
  -h|--help|'') sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; [ -n "$cmd" ] ;;
  *) die "unknown command \"$cmd\" (see --help)" ;;
esac
