# Sourced by scripts/demo and scripts/test: make .venv with Python 3.11+ and install
# the project (pinned by constraints.txt) into it.
#
# The install is a real one (a wheel built from this checkout, as `pip install .` gives a
# user), so the tests and the demo run what a user gets, not the source tree. The wheel's hot
# path is compiled with mypyc (setup.py; a C compiler and the Python headers), or pure Python
# with GATE_PURE_PYTHON=1. GATE_EDITABLE=1 installs --editable instead, for a quick edit-test
# loop (compiled in place: the .so files land beside the sources).
#
# A stamp in .venv (the hash of gate/**, setup.py, pyproject.toml, constraints.txt and the
# install's mode) skips the install when nothing changed since the last one: a second
# scripts/test does not compile again.
_gate_install_stamp() {
    {
        printf 'extras=%s editable=%s pure=%s\n' "$1" "${GATE_EDITABLE:-}" "${GATE_PURE_PYTHON:-}"
        find gate \( -name '*.py' -o -name py.typed \) -print0 | LC_ALL=C sort -z \
            | xargs -0 sha256sum
        sha256sum setup.py pyproject.toml constraints.txt
    } | sha256sum | cut -d' ' -f1
}

ensure_venv() {
    local python="${PYTHON:-python3}"
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "gate needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    local stamp
    stamp="$(_gate_install_stamp "$1")"
    if [ "$(cat .venv/.gate-install-stamp 2>/dev/null)" = "$stamp" ]; then
        return 0  # installed from these very sources already
    fi
    rm -f .venv/.gate-install-stamp
    local mode=()
    [ "${GATE_EDITABLE:-}" = 1 ] && mode=(--editable)
    # PIP_CONSTRAINT also reaches pip's isolated build environment: the build backend is pinned too.
    PIP_CONSTRAINT="$PWD/constraints.txt" .venv/bin/python -m pip install --quiet \
        --disable-pip-version-check "${mode[@]}" "$1" 2> >(grep -v "^WARNING: Location" >&2)
    echo "$stamp" > .venv/.gate-install-stamp
}
