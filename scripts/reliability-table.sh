#!/bin/sh
# Prints the figures the reliability tests recorded (DIR/*.tsv, by default
# target/tmp/reliability: the tests' CARGO_TARGET_TMPDIR/reliability)
# as one Markdown table; exits 1 if any figure differs from its required value.
set -eu
dir=${1:-target/tmp/reliability}
[ -d "$dir" ] || { echo "no figures in $dir: run the reliability tests first" >&2; exit 1; }
cat "$dir"/*.tsv | awk -F '\t' '
BEGIN { print "| area | figure | value | required |"; print "|---|---|---|---|"; bad = 0 }
{
	req = ($4 == "") ? "" : "must be " $4
	mark = ""
	if ($4 != "" && $3 != $4) { mark = " **MISSED**"; bad = 1 }
	print "| " $1 " | " $2 " | " $3 mark " | " req " |"
}
END { exit bad }'
