#!/usr/bin/env bash
# deploy/prometheus/alerts.yml: promtool checks the rules (syntax, PromQL,
# templates) and runs their unit tests (alerts_test.yml). promtool comes
# with the Debian package prometheus (scripts/deps.sh): without it the test
# skips (exit 77) and says so.
# Usage: promtool_rules.sh DEPLOY_PROMETHEUS_DIR
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1; then
  echo "skipped: promtool is not installed (Debian package prometheus)"
  exit 77
fi
cd "$1"
promtool check rules alerts.yml
promtool test rules alerts_test.yml
