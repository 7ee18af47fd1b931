# Sourced by scripts/test: system packages the tests need (Debian's chromium for the browser tests).
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium for the browser tests..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi
