# Sourced by scripts/demo and scripts/test: make .venv with Python 3.11+ and install
# the project (pinned by constraints.txt) into it.
#
# The install is a real one (a wheel built from this checkout, as `pip install .` gives a
# user), so the tests and the demo run what a user gets, not the source tree.
# GATE_EDITABLE=1 installs --editable instead, for a quick edit-test loop.
ensure_venv() {
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "gate needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    local mode=()
    [ "${GATE_EDITABLE:-}" = 1 ] && mode=(--editable)
    # PIP_CONSTRAINT also reaches pip's isolated build environment: the build backend is pinned too.
    PIP_CONSTRAINT="$PWD/constraints.txt" .venv/bin/python -m pip install --quiet \
        --disable-pip-version-check "${mode[@]}" "$1" 2> >(grep -v "^WARNING: Location" >&2)
}
