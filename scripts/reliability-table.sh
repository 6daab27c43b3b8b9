#!/bin/sh
# Prints the figures the reliability tests recorded (DIR/*.tsv, by default
# target/tmp/reliability: the tests' CARGO_TARGET_TMPDIR/reliability)
# as one Markdown table.
#   scripts/reliability-table.sh DIR SECTION...
# SECTION names a file DIR/SECTION.tsv that must be there (the Makefile lists
# them): a test that was skipped, or failed before recording, leaves its
# section out, and a table without it would still look complete.
# Exits 1 if a section is missing or a figure misses its requirement: a
# number (exactly) or >=N (at least).
set -eu
dir=${1:-target/tmp/reliability}
[ $# -gt 0 ] && shift
[ -d "$dir" ] || { echo "no figures in $dir: run the reliability tests first" >&2; exit 1; }
missing=
for s in "$@"; do
	[ -s "$dir/$s.tsv" ] || missing="$missing $s"
done
set -- "$dir"/*.tsv
[ -f "$1" ] || { echo "no figures in $dir: run the reliability tests first" >&2; exit 1; }
cat "$@" | awk -F '\t' -v missing="$missing" '
BEGIN { print "| area | figure | value | required |"; print "|---|---|---|---|"; bad = 0 }
{
	req = ""; mark = ""
	if ($4 ~ /^>=/) {
		req = "at least " substr($4, 3)
		if ($3 + 0 < substr($4, 3) + 0) { mark = " **MISSED**"; bad = 1 }
	} else if ($4 != "") {
		req = "must be " $4
		if ($3 != $4) { mark = " **MISSED**"; bad = 1 }
	}
	print "| " $1 " | " $2 " | " $3 mark " | " req " |"
}
END {
	n = split(missing, m, " ")
	for (i = 1; i <= n; i++) {
		print "| " m[i] " | no figures recorded (skipped, or failed before recording) | **MISSING** | |"
		bad = 1
	}
	exit bad
}'
