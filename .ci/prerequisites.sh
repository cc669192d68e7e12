# What the tests and the gates need beyond the Rust toolchain, gcc and
# python3: one line each, read by .ci/check (`make check`), which installs
# whatever is missing. Add a line here when a test needs something new.
#
#   deb       'TEST' PACKAGE...   Debian packages (one apt-get install for all)
#   component 'TEST' COMPONENT    a rustup component
#   run       'TEST' 'COMMAND'    anything else: COMMAND is run as it is
#
# TEST is a shell command, run in the repository's root, that succeeds when
# the thing is already there. The Debian packages are installed first, then
# the components, then the commands, in the order of the lines. For example:
#
#   deb 'command -v openssl' openssl
#   run 'test -x "$HOME/.pyenv/versions/3.8.18/bin/python3"' 'pyenv install 3.8.18'

# The memcheck tests (C API, models, examples, servers).
deb 'command -v valgrind' valgrind
# tests/c_api.rs compiles the header as C++ too.
deb 'command -v c++' g++
# tests/install.rs: make install, pkg-config, readelf and strip.
deb 'command -v make' make
deb 'command -v pkg-config' pkg-config
deb 'command -v readelf && command -v strip' binutils
# tests/embedded_servers.rs: c-examples/glib_embed.c runs evloop in a GLib loop.
deb 'pkg-config --exists glib-2.0' libglib2.0-dev
# CPython's own selectors tests, run against EvloopSelector (Debian ships
# them apart from its python3; pyenv's CPythons have them).
deb "python3 -c 'import test.test_selectors'" \
    "libpython3.$(python3 -c 'import sys; print(sys.version_info[1])' 2>/dev/null)-testsuite"
# tests/python.rs and tests/wheel.rs run on PyPy too (and fail without it
# under CI=true), with CPython's selectors tests there too.
deb 'command -v pypy3' pypy3
deb "pypy3 -c 'import test.test_selectors'" pypy3-lib-testsuite
# tests/tls_interop.rs and python/tests/test_tls.py talk to `openssl`.
deb 'command -v openssl' openssl
# tests/wheel.rs makes virtual environments (Debian splits venv out of python3).
deb "python3 -c 'import ensurepip, venv'" python3-venv

# The gates: rustup's minimal profile has neither rustfmt nor clippy.
component 'cargo fmt --version' rustfmt
component 'cargo clippy --version' clippy
# mypy on python/evloop, in a virtual environment of the gates' own.
run 'test -x target/ci-venv/bin/mypy' \
    'python3 -m venv target/ci-venv && target/ci-venv/bin/pip install -q mypy'
