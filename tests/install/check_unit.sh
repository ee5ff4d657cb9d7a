#!/usr/bin/env bash
# deploy/systemd/sagad.service passes `systemd-analyze verify` (with its
# ExecStart pointed at the built sagad) and keeps its hardening: a unit
# that loses one of these options fails here.
# Usage: check_unit.sh UNIT_TEMPLATE SAGAD_BINARY
set -euo pipefail
unit=$1 sagad=$2
command -v systemd-analyze >/dev/null || { echo "no systemd-analyze: skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|@CMAKE_INSTALL_FULL_BINDIR@/sagad|$sagad|" "$unit" >"$work/sagad.service"
grep -q '@[A-Z_]*@' "$work/sagad.service" && { echo "unsubstituted @VAR@ left in the unit"; exit 1; }
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$work/sagad.service" 2>&1) || {
  echo "systemd-analyze verify failed:"; echo "$out"; exit 1; }
if echo "$out" | grep -q "sagad.service"; then
  echo "systemd-analyze verify complains about the unit:"; echo "$out"; exit 1
fi
for opt in Type=notify WatchdogSec= DynamicUser=yes ProtectSystem=strict \
           NoNewPrivileges=yes 'CapabilityBoundingSet=$' ProtectHome=yes \
           PrivateTmp=yes RestrictAddressFamilies=; do
  grep -q "^$opt" "$work/sagad.service" || { echo "the unit lost $opt"; exit 1; }
done
echo "sagad.service verified"
