#!/usr/bin/env bash
# Set up pointformer in a project-local virtual environment, then run the main job or the tests.
#
#   bash tools/setup.sh demo    # install, generate synthetic data, render it (work_dirs/demo/)
#   bash tools/setup.sh test    # install with test extras, run the test suite
#   bash tools/setup.sh install # only install (EXTRAS=dev for the test set-up)
#
# Works on a fresh Debian/Ubuntu with Python >= 3.10. System libraries come from apt when it is
# available (as root or with sudo): libusb for open3d, software Vulkan for headless rendering.
# Without an NVIDIA driver it installs the CPU torch wheel and `spconv`; with one, the CUDA torch
# build and the matching `spconv-cuXXX`.
set -euo pipefail

cd "$(dirname "$0")/.."
ACTION="${1:-demo}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else return 1
  fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -qq >/dev/null || return 1
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

LDCONFIG_CACHE=""
have_lib() {
  # ldconfig lives in /sbin, often off a normal user's PATH; read its listing once.
  if [ -z "$LDCONFIG_CACHE" ]; then
    LDCONFIG_CACHE=$( (command -v ldconfig >/dev/null && ldconfig -p || /sbin/ldconfig -p) 2>/dev/null || true)
  fi
  [[ "$LDCONFIG_CACHE" == *"$1"* ]]
}

install_system_libraries() {
  local missing=()
  have_lib libusb-1.0.so.0 || missing+=(libusb-1.0-0)
  have_lib libvulkan.so.1 || missing+=(libvulkan1 mesa-vulkan-drivers)
  have_lib libGL.so.1 || missing+=(libgl1)
  have_lib libgomp.so.1 || missing+=(libgomp1)
  if [ ${#missing[@]} -gt 0 ]; then
    log "system libraries: ${missing[*]}"
    apt_install "${missing[@]}" || log "could not apt-get ${missing[*]}: open3d views may be unavailable"
  fi
}

make_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $($PYTHON --version)"
    if ! $PYTHON -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      local minor
      minor=$($PYTHON -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      if ! { apt_install "python${minor}-venv" || apt_install python3-venv; }; then
        echo "error: $PYTHON cannot create a virtual environment; install python${minor}-venv (as root: apt-get install python${minor}-venv)" >&2
        exit 1
      fi
      $PYTHON -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
}

has_nvidia_driver() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

install_torch() {
  if "$VENV/bin/python" -c "import torch" 2>/dev/null; then return; fi
  if has_nvidia_driver; then
    log "NVIDIA driver found: installing the CUDA build of torch $TORCH_VERSION"
    "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
  else
    log "no NVIDIA driver: installing the CPU build of torch $TORCH_VERSION"
    if "$VENV/bin/python" - <<'EOF' 2>/dev/null
import urllib.request
urllib.request.urlopen("https://download.pytorch.org/whl/cpu/torch/", timeout=5)
EOF
    then
      "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
    else
      # No PyTorch index reachable: a locally provided wheel (pip's find-links) or PyPI's, which
      # on Linux is the CUDA build (large, but it runs on the CPU too).
      log "download.pytorch.org unreachable: torch from the configured package index"
      "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
    fi
  fi
}

spconv_package() {
  "$VENV/bin/python" - <<'EOF'
import torch
cuda = torch.version.cuda
if cuda is None or not torch.cuda.is_available():
    print("spconv")
else:
    major, minor = (int(v) for v in cuda.split(".")[:2])
    version = major * 10 + minor
    builds = [(126, "cu126"), (124, "cu124"), (121, "cu121"), (118, "cu118"), (114, "cu114")]
    print("spconv-" + next((name for v, name in builds if version >= v), "cu114"))
EOF
}

install_project() {
  local extras="$1" stamp
  stamp="$VENV/.installed-$(cat pyproject.toml tools/setup.sh | sha1sum | cut -c1-12)-$extras"
  if [ -f "$stamp" ]; then return; fi
  install_torch
  local spconv
  spconv=$(spconv_package)
  log "installing pointformer[$extras] with $spconv"
  "$VENV/bin/pip" install -q -e ".[$extras]" "$spconv"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
}

install_system_libraries
make_venv

case "$ACTION" in
  install)
    install_project "${EXTRAS:-viz,las}"
    ;;
  demo)
    install_project "viz,las"
    log "main job: synthetic dataset -> work_dirs/demo/"
    "$VENV/bin/python" tools/quickstart.py --work-dir work_dirs/demo
    ;;
  test)
    install_project "dev"
    log "test suite"
    set +e
    "$VENV/bin/python" -m pytest -q "${@:2}"
    status=$?
    set -e
    # pytest's 5 means "no tests collected": a suite that ran nothing has failed.
    if [ "$status" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
    exit "$status"
    ;;
  *)
    echo "usage: bash tools/setup.sh [demo|test|install]" >&2
    exit 2
    ;;
esac
