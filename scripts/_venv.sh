# Sourced by the other scripts: make sure ./.venv exists with a Python >= 3.11.
# On a fresh Debian machine this installs what is missing (python3, venv) with apt-get.

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null || {
        as_root apt-get update -q >/dev/null && \
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
    }
}

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c \
            'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

ensure_venv() {
    if [ -x .venv/bin/python ] && .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        return 0
    fi
    local python
    python=$(find_python) || { apt_install python3 python3-venv python3-pip; python=$(find_python); }
    if ! "$python" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv
        "$python" -m venv .venv
    fi
    pip_install --upgrade pip
}

pip_install() {
    # pip may warn about unreachable extra index locations on some machines: keep output short
    local log status=0
    log=$(mktemp)
    .venv/bin/python -m pip install -q "$@" >"$log" 2>&1 || status=$?
    grep -v "^WARNING: Location" "$log" >&2 || true
    rm -f "$log"
    return "$status"
}
