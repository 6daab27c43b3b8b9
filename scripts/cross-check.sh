#!/bin/sh
# Proves the cross-builds: for each target, clippy over the whole workspace
# with every target kind (binaries, tests, examples) and no warning allowed,
# then an optimised build of the binaries (the release profile, without the
# shipped binaries' LTO), which must be executables the target's system runs
# (scripts/check-binaries.sh).
#   scripts/cross-check.sh [TARGET...]   (default: both Macs and FreeBSD)
# `make cross` runs it; .ci/run installs what it needs.
set -eu
[ $# -gt 0 ] || set -- aarch64-apple-darwin x86_64-apple-darwin x86_64-unknown-freebsd
bins=$(sed -n 's/^BINS *= *//p' Makefile)
out=${CARGO_TARGET_DIR:-target}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "$@"; do
	started=$(date +%s)
	sh scripts/cross.sh "$t" clippy --workspace --all-targets --locked -- -D warnings
	sh scripts/cross.sh "$t" build --release --locked --bins 2>"$log" || { cat "$log" >&2; exit 1; }
	if grep -q '^warning' "$log"; then
		cat "$log" >&2
		echo "cross-check: $t: the build warns" >&2
		exit 1
	fi
	files=
	for b in $bins; do files="$files $out/$t/release/$b"; done
	# shellcheck disable=SC2086 # one word per file
	sh scripts/check-binaries.sh "$t" $files
	kind=$(file -b "$out/$t/release/workmem-backup" | cut -d, -f1)
	echo "cross-check: $t: clippy clean, $(echo "$bins" | wc -w) binaries built ($kind) in $(($(date +%s) - started)) s"
done
