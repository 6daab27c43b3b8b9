#!/bin/sh
# make demo: the whole job on a built-in sample, explained as it goes.
#   scripts/demo.sh BIN_DIR WORK_DIR
# BIN_DIR holds the release binaries, and examples/make-sample (make demo builds both).
set -eu
bin=$1
work=$2
need() { command -v "$1" >/dev/null 2>&1 || { echo "demo: $1 is needed ($2)" >&2; exit 1; }; }
need sqlite3 "apt-get install sqlite3"
need age "apt-get install age"
need age-keygen "apt-get install age"

rm -rf "$work"
mkdir -p "$work"
echo "1. A sample workmem-shaped database (WAL mode, FTS5, embeddings):"
"$bin/examples/make-sample" "$work/memory.db" 4
rows() { sqlite3 "$1" "SELECT (SELECT count(*) FROM entities)||' entities, '||(SELECT count(*) FROM observations)||' observations, '||(SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'backup')||' FTS hits for \"backup\"'"; }
echo "   source: $(rows "$work/memory.db")"

echo "2. wm-snapshot: a consistent snapshot, checked by sqlite3:"
"$bin/wm-snapshot" --db "$work/memory.db" --to "$work/snapshot.db" --check
echo "   integrity_check: $(sqlite3 "$work/snapshot.db" 'PRAGMA integrity_check')"
echo "   snapshot: $(rows "$work/snapshot.db")"

echo "3. workmem-backup: snapshot + age encryption to a throwaway key, atomically:"
age-keygen -o "$work/identity.txt" 2>/dev/null
recipient=$(age-keygen -y "$work/identity.txt")
"$bin/workmem-backup" --db "$work/memory.db" --to "$work/memory.db.age" --age-recipient "$recipient"
echo "   $(ls -l "$work/memory.db.age" | awk '{print $1, $5, "bytes"}'), starts with: $(head -c 21 "$work/memory.db.age")"

echo "4. The same as a pipeline: wm-snapshot | wm-seal:"
"$bin/wm-snapshot" --db "$work/memory.db" | "$bin/wm-seal" -r "$recipient" --to "$work/pipeline.db.age"

echo "5. Restore with the standard age CLI and check with sqlite3:"
for f in memory.db.age pipeline.db.age; do
	age -d -i "$work/identity.txt" "$work/$f" > "$work/restored-$f.db"
	check=$(sqlite3 "$work/restored-$f.db" 'PRAGMA integrity_check')
	[ "$check" = ok ] || { echo "demo: $f: integrity_check said: $check" >&2; exit 1; }
	[ "$(rows "$work/restored-$f.db")" = "$(rows "$work/memory.db")" ] || { echo "demo: $f: rows differ" >&2; exit 1; }
	echo "   $f: age -d ok, integrity_check ok, $(rows "$work/restored-$f.db")"
done
echo "6. wm-verify: prove the backup restores without writing plaintext (and how stale it is):"
"$bin/wm-verify" -i "$work/identity.txt" --against "$work/memory.db" "$work/memory.db.age"
echo "   a damaged copy is refused, and the message says what is wrong with it:"
size=$(wc -c < "$work/memory.db.age")
head -c $((size - 1000)) "$work/memory.db.age" > "$work/cut.db.age"
if "$bin/wm-verify" -q -i "$work/identity.txt" "$work/cut.db.age"; then
	echo "demo: wm-verify accepted a truncated backup" >&2; exit 1
fi
echo "Demo passed: the backups decrypt with age, hold the same rows as the source, and verify. Files are in $work/."
