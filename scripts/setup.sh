#!/usr/bin/env bash
# Create the virtual environment when missing and install the project with its system needs.
set -euo pipefail
python=${1:-python3.11}
venv=${2:-.venv}

# System libraries: ImageMagick's MagickWand for medmnistc (MedMNIST-C corruptions) and
# Chromium for the report's browser test. Installed with apt when missing and we are root.
need=()
ldconfig -p 2>/dev/null | grep -q libMagickWand-6 || need+=(libmagickwand-6.q16-6)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ((${#need[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: please install ${need[*]} (Debian names) for corruptions and the browser test" >&2
  fi
fi

[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# torch first, pinned: these builds lie on this machine's disk; other versions pull several GB.
"$venv/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$venv/bin/python" -m pip install -q -e ".[dev]"
