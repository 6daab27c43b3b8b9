#!/bin/sh
# Release archives in ripgrep's layout, one per target, and their checksums:
#   OUT/workmem-backup-VERSION-TARGET.tar.gz, holding
#     workmem-backup-VERSION-TARGET/
#       wm-snapshot wm-seal workmem-backup wm-verify ...   the binaries ($BINS)
#       README.md LICENSE
#       doc/*.1                                           the man pages
#       doc/local.workmem-backup.plist                    the launchd example
#       complete/NAME.bash complete/_NAME complete/NAME.fish
#   OUT/SHA256SUMS
# Each target is built in release (LTO) with cargo-zigbuild (scripts/cross.sh)
# and checked (scripts/check-binaries.sh). The archives are reproducible:
# sorted, owned by 0:0, dated by the last commit.
#   scripts/dist.sh OUT TARGET...     (`make dist` gives the five targets)
set -eu
out=$1
shift
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
bins=$(sed -n 's/^BINS *= *//p' Makefile)
target_dir=${CARGO_TARGET_DIR:-target}
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
for tool in cargo-zigbuild file python3 sha256sum; do
	command -v "$tool" >/dev/null || { echo "dist: $tool is needed (see .ci/run for zig and cargo-zigbuild)" >&2; exit 1; }
done
rustup target add "$@" >/dev/null

# Completions are the same for every target: this machine's build makes them.
cargo build --locked --bins
rm -rf "$out"
mkdir -p "$out/complete"
for b in $bins; do
	"$target_dir/debug/$b" --completions bash >"$out/complete/$b.bash"
	"$target_dir/debug/$b" --completions zsh >"$out/complete/_$b"
	"$target_dir/debug/$b" --completions fish >"$out/complete/$b.fish"
done

for t in "$@"; do
	sh scripts/cross.sh "$t" build --release --locked --bins
	name=workmem-backup-$version-$t
	dir=$out/$name
	mkdir -p "$dir/doc" "$dir/complete"
	for b in $bins; do cp "$target_dir/$t/release/$b" "$dir/"; done
	# shellcheck disable=SC2046 # one word per binary
	sh scripts/check-binaries.sh "$t" $(for b in $bins; do echo "$dir/$b"; done)
	cp README.md LICENSE "$dir/"
	cp -R docs "$dir/docs"
	for b in $bins; do cp "man/$b.1" "$dir/doc/"; done
	cp contrib/launchd/local.workmem-backup.plist "$dir/doc/"
	cp "$out"/complete/* "$dir/complete/"
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$out" -cf - "$name" |
		gzip -9n >"$dir.tar.gz"
	rm -rf "$dir"
done
rm -rf "$out/complete"
(cd "$out" && sha256sum -- *.tar.gz >SHA256SUMS)
echo "dist: $out:"
(cd "$out" && ls -l -- *.tar.gz SHA256SUMS)
