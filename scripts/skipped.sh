#!/bin/sh
# One line on what the tests left out for want of a tool, from the lines the
# harness's have() recorded (DIR/*.tsv: why, "skipped" or "cut short", test);
# nothing at all when nothing was left out.
#   scripts/skipped.sh DIR [WHO]
# e.g. "make test: 12 tests skipped: age, rclone not installed (CI=true makes them fail)"
set -eu
dir=$1
who=${2:-make test}
set -- "$dir"/*.tsv
[ -f "$1" ] || exit 0
cat "$@" | awk -F '\t' -v who="$who" '
NF >= 3 {
	if (!($1 in seen)) { seen[$1] = 1; reasons[++n] = $1 }
	if ($2 == "skipped") whole[$3] = 1; else part[$3] = 1
}
function tests(k) { return k " test" (k == 1 ? "" : "s") }
END {
	s = 0; for (t in whole) s++
	c = 0; for (t in part) if (!(t in whole)) c++
	if (s + c == 0) exit
	count = ""
	if (s) count = tests(s) " skipped"
	if (c) count = count (count == "" ? tests(c) : ", " c) " cut short"
	tools = ""; other = ""
	for (i = 1; i <= n; i++) {
		r = reasons[i]
		if (sub(/ not installed$/, "", r)) tools = tools (tools == "" ? "" : ", ") r
		else other = other (other == "" ? "" : "; ") r
	}
	why = (tools == "") ? other : tools " not installed" (other == "" ? "" : "; " other)
	print who ": " count ": " why " (CI=true makes them fail)"
}'
