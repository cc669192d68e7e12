# Builds and installs evloop's C library (README.md, "Install"):
#
#   make && sudo make install         PREFIX (/usr/local), LIBDIR, INCLUDEDIR, PKGCONFIGDIR
#   make install DESTDIR=/tmp/stage   stages the same tree under /tmp/stage
#   sudo make uninstall               removes exactly the files install put there
#
# It calls cargo and needs nothing else. CARGO_TARGET_DIR (cargo's own
# variable) says where cargo builds, as for cargo itself.
#
#   sudo make check                   installs what the tests need, then runs
#                                     the gates and every test (README.md)

PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR      ?=
CARGO        ?= cargo
INSTALL      ?= install
STRIP        ?= strip
CARGO_TARGET_DIR ?= target
# Absolute, as in the dependency file cargo writes beside the library.
BUILD        := $(abspath $(CARGO_TARGET_DIR))/release

ABI     := $(shell sed -n 's/^pub const EVL_ABI_VERSION: u32 = \([0-9]*\);$$/\1/p' src/ffi/types.rs)
ifeq ($(ABI),)
$(error EVL_ABI_VERSION not found in src/ffi/types.rs)
endif
VERSION := $(shell sed -n 's/^version = "\([0-9.]*\)"$$/\1/p' Cargo.toml | head -n 1)
# libevloop.so.ABI.MINOR.PATCH: the major is the ABI version, as in the
# SONAME (libevloop.so.ABI, set by build.rs); minor and patch are the crate's.
SOVERSION := $(ABI).$(word 2,$(subst ., ,$(VERSION))).$(word 3,$(subst ., ,$(VERSION)))
# What linking libevloop.a needs besides it: rustc's answer to
#   cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs
# less -lgcc_s and -lc, which the compiler driver adds itself (and which a
# -static link must not name: libgcc_s exists only as a shared library).
LIBS_PRIVATE := -lutil -lrt -lpthread -lm -ldl

SHARED := libevloop.so.$(SOVERSION)
INSTALLED := \
	$(LIBDIR)/$(SHARED) \
	$(LIBDIR)/libevloop.so.$(ABI) \
	$(LIBDIR)/libevloop.so \
	$(LIBDIR)/libevloop.a \
	$(INCLUDEDIR)/evloop.h \
	$(PKGCONFIGDIR)/evloop.pc

# The .pc names its directories relative to ${prefix} where it can, so that
# pkg-config --define-prefix can move it.
pc_dir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

LIBRARIES := $(BUILD)/libevloop.so $(BUILD)/libevloop.a
# Every file the last build read, from the dependency file cargo writes beside
# the library (src/**/*.rs, build.rs, evloop.map...): one "target: files" line.
# Before the first build there is none, and the library is missing anyway.
# A file since deleted drops out (the change that deleted it touched another).
CARGO_SOURCES := $(wildcard $(filter-out %:,$(shell cat $(BUILD)/libevloop.d 2>/dev/null)))

.PHONY: all install uninstall print-installed check
# cargo decides what to rebuild: it knows every file the library depends on.
# Then the library rule below, which finds it up to date but when a change
# needed no rebuild (and then only touches it), so that install needs no cargo.
all:
	$(CARGO) build --release --lib
	@$(MAKE) -s --no-print-directory $(LIBRARIES)

# install calls cargo only when the library is missing or older than a file
# of cargo's list, so that `sudo make install` after `make` does not need cargo
# on root's PATH, and a plain `make install` never installs a stale library.
# The touch: cargo leaves a library as it was when a change (Cargo.toml's
# comments, say) needs no rebuild, and it would stay older than that file.
$(BUILD)/libevloop.so: Cargo.toml Cargo.lock $(CARGO_SOURCES)
	$(CARGO) build --release --lib
	touch $@ $(BUILD)/libevloop.a
$(BUILD)/libevloop.a: $(BUILD)/libevloop.so

# The tests' own prerequisites (Debian packages, rustup components), then
# .ci/run's gates and every test; .ci/run is this target (README.md, "Tests").
check:
	sh .ci/check

install: $(LIBRARIES)
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 755 $(BUILD)/libevloop.so $(DESTDIR)$(LIBDIR)/$(SHARED)
	ln -sf $(SHARED) $(DESTDIR)$(LIBDIR)/libevloop.so.$(ABI)
	ln -sf libevloop.so.$(ABI) $(DESTDIR)$(LIBDIR)/libevloop.so
	$(INSTALL) -m 644 $(BUILD)/libevloop.a $(DESTDIR)$(LIBDIR)/libevloop.a
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/libevloop.a
	$(INSTALL) -m 644 include/evloop.h $(DESTDIR)$(INCLUDEDIR)/evloop.h
	printf '%s\n' \
		'prefix=$(PREFIX)' \
		'libdir=$(call pc_dir,$(LIBDIR))' \
		'includedir=$(call pc_dir,$(INCLUDEDIR))' \
		'' \
		'Name: evloop' \
		'Description: An epoll event loop with a stable C ABI' \
		'Version: $(VERSION)' \
		'Libs: -L$${libdir} -levloop' \
		'Libs.private: $(LIBS_PRIVATE)' \
		'Cflags: -I$${includedir}' \
		> $(DESTDIR)$(PKGCONFIGDIR)/evloop.pc

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# The files install puts in place, one a line (the tests compare).
print-installed:
	@printf '%s\n' $(INSTALLED)
