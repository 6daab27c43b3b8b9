# workmem-backup: the two commands a newcomer needs are `make demo` and `make test`.

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR   = $(DESTDIR)$(PREFIX)/bin
MANDIR   = $(DESTDIR)$(PREFIX)/share/man/man1
CARGO   ?= cargo
BINS     = wm-snapshot wm-seal workmem-backup wm-verify
# Where cargo builds: CARGO_TARGET_DIR when set, as cargo itself decides.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RELEASE  = $(TARGET_DIR)/release
# CARGO_TARGET_TMPDIR of the integration tests: skips and reliability figures.
TEST_TMP = $(TARGET_DIR)/tmp
DEMO     = $(TARGET_DIR)/demo

.PHONY: all build release test lint demo install uninstall bench reliability cross dist clean

all: build

build:
	$(CARGO) build --release --locked

release: build

# Unit tests, integration tests (the real binaries against the real age and
# sqlite3 CLIs), twice: with the Linux fast paths, then with the paths macOS
# and FreeBSD take (the `portable` feature); then lint: fmt, clippy in both
# modes, man pages. The last line names the tools the tests did not find and
# counts the tests they skipped.
test:
	rm -rf $(TEST_TMP)/skips
	$(CARGO) test --workspace --locked --all-targets -- --test-threads=2
	@echo "make test: once more with the portable paths (--features portable)"
	$(CARGO) test --workspace --locked --all-targets --features portable -- --test-threads=2
	$(MAKE) lint
	@sh scripts/skipped.sh $(TEST_TMP)/skips "make test"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --locked --all-targets -- -D warnings
	$(CARGO) clippy --workspace --locked --all-targets --features portable -- -D warnings
	@if command -v mandoc >/dev/null 2>&1; then \
		for p in man/*.1; do mandoc -Tlint -W warning $$p || exit 1; done; \
	elif [ "$$CI" = true ]; then echo "mandoc is required when CI=true" >&2; exit 1; \
	else echo "SKIPPED: mandoc -Tlint (mandoc not installed)"; fi

# The main job on a built-in sample: a workmem-shaped database, snapshotted,
# encrypted to a throwaway key and verified with wm-verify; it needs nothing
# but what this builds. With the age and sqlite3 CLIs installed, the backups
# are also decrypted with age and checked with sqlite3.
demo: build
	$(CARGO) build --release --locked --example make-sample --example make-key
	@sh scripts/demo.sh $(RELEASE) $(DEMO)

install: build
	install -d $(BINDIR) $(MANDIR)
	for b in $(BINS); do install -m 0755 $(RELEASE)/$$b $(BINDIR)/$$b; done
	for b in $(BINS); do install -m 0644 man/$$b.1 $(MANDIR)/$$b.1; done

uninstall:
	for b in $(BINS); do rm -f $(BINDIR)/$$b $(MANDIR)/$$b.1; done

# Side-by-side benchmark against sqlite3 + age (issue 7); results in
# $(TARGET_DIR)/bench/ unless WM_BENCH_DIR says otherwise.
WM_BENCH_BIN ?= $(RELEASE)
WM_BENCH_DIR ?= $(TARGET_DIR)/bench
bench: build
	$(CARGO) build --release --locked --example wm-bench
	WM_BENCH_BIN=$(WM_BENCH_BIN) WM_BENCH_DIR=$(WM_BENCH_DIR) $(RELEASE)/examples/wm-bench

# The long reliability suite (issue 6): crash, fault, load and bad-input trials
# at full counts, in release; ends with the table of figures. The three
# modules of the integration-test crate, selected by their paths.
RELIABILITY_TESTS = reliability:: reliability_faults:: reliability_inputs::
reliability: build
	rm -rf $(TEST_TMP)/reliability $(TEST_TMP)/skips
	WM_RELIABILITY_FULL=1 $(CARGO) test --release --locked --test it -- --test-threads=1 $(RELIABILITY_TESTS)
	@echo; sh scripts/reliability-table.sh $(TEST_TMP)/reliability | tee $(TARGET_DIR)/reliability.md
	@sh scripts/skipped.sh $(TEST_TMP)/skips "make reliability"

# The cross-builds CI proves (.ci/run installs zig, cargo-zigbuild and the
# targets): clippy of everything, and the binaries, for both Macs and FreeBSD.
CROSS_TARGETS ?= aarch64-apple-darwin x86_64-apple-darwin x86_64-unknown-freebsd
cross:
	sh scripts/cross-check.sh $(CROSS_TARGETS)

# Release archives (ripgrep's layout) and SHA256SUMS in $(DIST), built with
# zig like the cross-builds: static Linux binaries (musl), both Macs, FreeBSD.
VERSION      := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DIST         ?= $(TARGET_DIR)/dist/$(VERSION)
DIST_TARGETS ?= x86_64-unknown-linux-musl aarch64-unknown-linux-musl $(CROSS_TARGETS)
dist:
	sh scripts/dist.sh $(DIST) $(DIST_TARGETS)

clean:
	$(CARGO) clean
