#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium for browser tests, CJK fonts for screenshots,
# and Java 17 for the Spark engine's parity tests when no java is on PATH; and wrk, the load
# generator of bench/bench_scans.py.
# Installs them when run as root; otherwise says what is missing (browser and Spark tests then
# skip, except in CI where they are required).
set -euo pipefail
packages=(chromium fonts-noto-cjk wrk)
command -v java >/dev/null || packages+=(openjdk-17-jre-headless)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Slim images drop the man folders, and the JRE's post-install step links a man page there.
  mkdir -p /usr/share/man/man1
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing Debian packages (install as root: apt-get install ${missing[*]}); browser and Spark tests will be skipped"
fi
