#!/bin/sh
# Runs cargo-zigbuild for one target: zig compiles SQLite and ring's C and
# assembly and links the binaries, with no SDK of the target's system.
#   scripts/cross.sh TARGET check|clippy|build [CARGO ARGS...]
# Needs `rustup target add TARGET`, and zig and cargo-zigbuild (.ci/run pins
# both); honours CARGO_TARGET_DIR.
set -eu
target=$1
command=$2
shift 2
case $target in
*-apple-darwin)
	# Without it zig marks the binaries as needing the macOS it was built
	# for (15); 11.0 is the first macOS on Apple silicon.
	export MACOSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-11.0}"
	# Unless SDKROOT is set, rustc asks xcrun for a macOS SDK and warns that
	# there is none. zig links against its own libSystem stubs and headers:
	# an empty directory says so and keeps rustc quiet.
	if [ -z "${SDKROOT:-}" ]; then
		SDKROOT="$(pwd)/${CARGO_TARGET_DIR:-target}/no-macos-sdk"
		mkdir -p "$SDKROOT"
		export SDKROOT
	fi
	;;
esac
# The target first: anything after a `--` in ARGS is clippy's.
exec cargo-zigbuild "$command" --target "$target" "$@"
