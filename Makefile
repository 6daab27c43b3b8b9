# workmem-backup: the two commands a newcomer needs are `make demo` and `make test`.

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR   = $(DESTDIR)$(PREFIX)/bin
MANDIR   = $(DESTDIR)$(PREFIX)/share/man/man1
# Where each shell looks for completions under PREFIX.
BASHDIR  = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR   = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR  = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
CARGO   ?= cargo
BINS     = wm-snapshot wm-seal workmem-backup wm-verify wm-restore wm-prune wm-keygen
# Where cargo builds: CARGO_TARGET_DIR when set, as cargo itself decides.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RELEASE  = $(TARGET_DIR)/release
# The shipped binaries: fat LTO, one codegen unit (Cargo.toml, release-lto).
SHIPPED  = $(TARGET_DIR)/release-lto
# CARGO_TARGET_TMPDIR of the integration tests: skips and reliability figures.
TEST_TMP = $(TARGET_DIR)/tmp
DEMO     = $(TARGET_DIR)/demo

.PHONY: all build release test lint demo install uninstall bench reliability fuzz cross dist clean

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
	rm -rf $(TEST_TMP)/skips $(TEST_TMP)/go-differential*.txt
	$(CARGO) test --workspace --locked --all-targets -- --test-threads=2
	@echo "make test: once more with the portable paths (--features portable)"
	$(CARGO) test --workspace --locked --all-targets --features portable -- --test-threads=2
	$(MAKE) lint
	@cat $(TEST_TMP)/go-differential*.txt 2>/dev/null || true
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
# encrypted to a throwaway key and verified with wm-verify, then three
# timestamped backups pruned to two by wm-prune; it needs nothing but what
# this builds. With the age and sqlite3 CLIs installed, the backups
# are also decrypted with age and checked with sqlite3.
demo: build
	$(CARGO) build --release --locked --example make-sample --example make-key --example crash-writer
	@sh scripts/demo.sh $(RELEASE) $(DEMO)

install:
	$(CARGO) build --profile release-lto --locked
	install -d $(BINDIR) $(MANDIR) $(BASHDIR) $(ZSHDIR) $(FISHDIR)
	for b in $(BINS); do install -m 0755 $(SHIPPED)/$$b $(BINDIR)/$$b; done
	for b in $(BINS); do install -m 0644 man/$$b.1 $(MANDIR)/$$b.1; done
	for b in $(BINS); do \
		$(SHIPPED)/$$b --completions bash > $(BASHDIR)/$$b && \
		$(SHIPPED)/$$b --completions zsh > $(ZSHDIR)/_$$b && \
		$(SHIPPED)/$$b --completions fish > $(FISHDIR)/$$b.fish || exit 1; \
	done

uninstall:
	for b in $(BINS); do rm -f $(BINDIR)/$$b $(MANDIR)/$$b.1 $(BASHDIR)/$$b $(ZSHDIR)/_$$b $(FISHDIR)/$$b.fish; done

# Side-by-side benchmark against sqlite3 + age (issue 7), and wm-prune over
# 10,000 names; results in $(TARGET_DIR)/bench/ unless WM_BENCH_DIR says
# otherwise: latest.md is the table docs/performance.md quotes, copied to
# docs/bench-latest.md at the end of every run.
# Exits 1 when a target is missed (WM_BENCH_ONLY=P,A runs only the cases
# named so, and judges only the targets those cases measure).
WM_BENCH_BIN ?= $(SHIPPED)
WM_BENCH_DIR ?= $(TARGET_DIR)/bench
bench:
	$(CARGO) build --profile release-lto --locked --bins --example wm-bench
	WM_BENCH_BIN=$(WM_BENCH_BIN) WM_BENCH_DIR=$(WM_BENCH_DIR) $(SHIPPED)/examples/wm-bench; \
	status=$$?; cp $(WM_BENCH_DIR)/latest.md docs/bench-latest.md; exit $$status

# The long reliability suite (issue 6): crash, fault, load, signal,
# bad-input, restore, power-loss and hostile-directory trials (a second user
# racing root runs; the core-dump check) at full counts, in release; ends
# with the table of figures. The modules of the integration-test crate,
# selected by their paths, and the sections of the table they must all have
# recorded (a skipped or failed test leaves its section out, and the table
# then fails). CI=true: a missing tool fails the suite instead of skipping a
# test.
RELIABILITY_TESTS = reliability:: reliability_faults:: reliability_inputs:: reliability_large:: reliability_restore:: powerloss:: hostile_race::
RELIABILITY_SECTIONS = bad_inputs crash_wm-seal crash_workmem-backup crash_wm-restore crash_wm-prune_--delete \
	faults large leftovers load locks race restore secrets signals power_loss hostile_dirs core_dumps go_differential
reliability: build
	rm -rf $(TEST_TMP)/reliability $(TEST_TMP)/skips
	WM_DIFF_CASES=50000 $(CARGO) test --release --locked -p wmbackup --lib -- differential
	CI=true WM_GO_DIFF_CASES=30000 $(CARGO) test --release --locked --test it -- --nocapture interop_go::we_accept
	CI=true WM_RELIABILITY_FULL=1 $(CARGO) test --release --locked --test it -- --test-threads=1 $(RELIABILITY_TESTS); \
	status=$$?; echo; \
	sh scripts/reliability-table.sh $(TEST_TMP)/reliability $(RELIABILITY_SECTIONS) > $(TARGET_DIR)/reliability.md; \
	table=$$?; cat $(TARGET_DIR)/reliability.md; cp $(TARGET_DIR)/reliability.md docs/reliability-latest.md; \
	sh scripts/skipped.sh $(TEST_TMP)/skips "make reliability"; \
	[ $$status = 0 ] && [ $$table = 0 ]

# The age reader and the key parsers under a long mutation run, from the
# committed seed corpus (lib/testdata/fuzz); WM_FUZZ_CASES sets the count.
WM_FUZZ_CASES ?= 200000
fuzz:
	WM_FUZZ_CASES=$(WM_FUZZ_CASES) $(CARGO) test --release --locked -p wmbackup --lib -- fuzz

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
