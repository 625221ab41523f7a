#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium for browser tests, CJK fonts for screenshots.
# Installs them when run as root; otherwise says what is missing (browser tests then skip,
# except in CI where they are required).
set -euo pipefail
packages=(chromium fonts-noto-cjk)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing Debian packages (install as root: apt-get install ${missing[*]}); browser tests will be skipped"
fi
