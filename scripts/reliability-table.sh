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
# The hostile_dirs section (tests/it/hostile_race.rs) has the same figures
# for every writer, named "WRITER: FIGURE": it follows as a second table,
# one row per writer, checked the same way.
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
	sep = index($2, ": ")
	if ($1 == "hostile_dirs" && sep > 0 && substr($2, 1, sep - 1) != "all writers") {
		w = substr($2, 1, sep - 1); f = substr($2, sep + 2)
		if (!(w in seen_w)) { seen_w[w] = 1; ws[++nw] = w }
		if (!(f in seen_f)) { seen_f[f] = 1; fs[++nf] = f; freq[f] = req }
		cell[w, f] = $3 mark
		next
	}
	print "| " $1 " | " $2 " | " $3 mark " | " req " |"
}
END {
	n = split(missing, m, " ")
	for (i = 1; i <= n; i++) {
		print "| " m[i] " | no figures recorded (skipped, or failed before recording) | **MISSING** | |"
		bad = 1
	}
	if (nw > 0) {
		print ""
		print "hostile_dirs: a second user races each root run in a directory it can write"
		print ""
		line = "| writer |"; rule = "|---|"
		for (j = 1; j <= nf; j++) {
			h = fs[j]
			if (freq[fs[j]] != "") h = h " (" freq[fs[j]] ")"
			line = line " " h " |"; rule = rule "---|"
		}
		print line; print rule
		for (i = 1; i <= nw; i++) {
			line = "| " ws[i] " |"
			for (j = 1; j <= nf; j++) line = line " " cell[ws[i], fs[j]] " |"
			print line
		}
	}
	exit bad
}'
