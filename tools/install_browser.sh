#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver, which tests/test_website.py uses to read the course
# website the way a learner does. Called by the README's set-up command. Where it cannot install them
# (no apt-get, or neither root nor sudo), it says so in one line and the website test is skipped.
set -u

if { command -v chromium || command -v chromium-headless-shell; } >/dev/null && command -v chromedriver >/dev/null; then
  exit 0  # already there
fi

if command -v apt-get >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null; then
    as_root=(sudo)  # may ask for your password
  fi
  if [ -n "${as_root+set}" ] &&
     "${as_root[@]}" apt-get update -qq &&
     DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null; then
    exit 0
  fi
fi

echo "No Chromium installed here: tests/test_website.py will be skipped. To run it, install Chromium" \
     "and its WebDriver (Debian/Ubuntu: sudo apt-get install chromium chromium-driver)."
