#!/bin/sh
# Checks that cross-built FILEs are executables TARGET's system runs: the
# file type (`file`), and for macOS an ad hoc signature and macOS 11.0 as
# the minimum (scripts/macho.py).
#   scripts/check-binaries.sh TARGET FILE...
set -eu
target=$1
shift
case $target in
aarch64-apple-darwin) want='Mach-O 64-bit arm64 executable' ;;
x86_64-apple-darwin) want='Mach-O 64-bit x86_64 executable' ;;
x86_64-*-freebsd) want='ELF 64-bit LSB .*x86-64.*FreeBSD' ;;
x86_64-*-linux-musl) want='ELF 64-bit LSB .*x86-64.*static' ;;
aarch64-*-linux-musl) want='ELF 64-bit LSB .*ARM aarch64.*static' ;;
*) echo "check-binaries: no rule for $target" >&2; exit 1 ;;
esac
for f in "$@"; do
	if ! file -b "$f" | grep -q "$want"; then
		echo "check-binaries: $f: $(file -b "$f"); expected $want" >&2
		exit 1
	fi
done
case $target in
*-apple-darwin) python3 scripts/macho.py "${MACOSX_DEPLOYMENT_TARGET:-11.0}" "$@" >/dev/null ;;
esac
