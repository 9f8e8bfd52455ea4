#!/usr/bin/env bash
# Chromium and ChromeDriver for the browser test of report.html (tests/test_report_html.py).
# Installs Debian's packages where they are missing and apt-get may be used (root, or sudo without a
# password); elsewhere it says how, and the browser test skips (unless UNIKE_REQUIRE_BROWSER=1).
set -uo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if (have chromium || have chromium-browser || have google-chrome) && have chromedriver; then
  exit 0
fi
if ! have apt-get; then
  echo "setup: no Chromium/ChromeDriver and no apt-get: the browser test of report.html will skip" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=""; elif have sudo && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "setup: the browser test needs Chromium: sudo apt-get install chromium chromium-driver (it skips until then)" >&2
  exit 0
fi
echo "setup: installing Chromium and ChromeDriver (Debian packages) for the browser test"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null; } \
  || echo "setup: warning: could not install chromium chromium-driver; the browser test will skip" >&2
