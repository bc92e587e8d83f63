# Sourced by scripts/demo and scripts/test: make .venv with Python 3.11+ and install
# the project (pinned by constraints.txt) into it.
ensure_venv() {
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "gate needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --constraint constraints.txt --editable "$1" 2> >(grep -v "^WARNING: Location" >&2)
}
