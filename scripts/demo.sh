#!/bin/sh
# make demo: the whole job on a built-in sample, explained as it goes, down to a
# history of timestamped backups pruned by a retention policy.
#   scripts/demo.sh BIN_DIR WORK_DIR
# BIN_DIR holds the release binaries and examples/make-sample, examples/make-key
# (make demo builds them): nothing else is needed. When the age and sqlite3 CLIs
# are installed, the backups are also restored and checked with them.
set -eu
bin=$1
work=$2
have() { command -v "$1" >/dev/null 2>&1; }
fail() { echo "demo: $*" >&2; exit 1; }
size() { ls -l "$1" | awk '{print $1, $5, "bytes"}'; }

rm -rf "$work"
mkdir -p "$work"
echo "1. A sample workmem-shaped database (WAL mode, FTS5, embeddings):"
echo "   $("$bin/examples/make-sample" "$work/memory.db" 4)"

echo "2. wm-snapshot: a consistent snapshot, checked with PRAGMA quick_check before it is committed (--check):"
"$bin/wm-snapshot" --db "$work/memory.db" --to "$work/snapshot.db" --check
echo "   snapshot.db: $(size "$work/snapshot.db")"

echo "3. workmem-backup: snapshot + age encryption to a throwaway key (made by examples/make-key), atomically:"
recipient=$("$bin/examples/make-key" "$work/identity.txt")
"$bin/workmem-backup" --db "$work/memory.db" --to "$work/memory.db.age" --age-recipient "$recipient"
echo "   memory.db.age: $(size "$work/memory.db.age"), starts with: $(head -c 21 "$work/memory.db.age")"

echo "4. The same as a pipeline: wm-snapshot | wm-seal:"
"$bin/wm-snapshot" --db "$work/memory.db" | "$bin/wm-seal" -r "$recipient" --to "$work/pipeline.db.age"
echo "   pipeline.db.age: $(size "$work/pipeline.db.age")"

echo "5. wm-verify: each backup decrypted in memory (no plaintext written), integrity_check, FTS5 queries,"
echo "   every table counted beside the live database:"
"$bin/wm-verify" -v -i "$work/identity.txt" --against "$work/memory.db" "$work/memory.db.age"
for f in memory.db.age pipeline.db.age; do
	json=$("$bin/wm-verify" --json -i "$work/identity.txt" --against "$work/memory.db" "$work/$f") ||
		fail "$f: wm-verify says it does not restore"
	case $json in *'"restorable":true'*) ;; *) fail "$f: not restorable: $json" ;; esac
	# Every table's count must equal the live database's.
	tables=$(printf '%s\n' "$json" | grep -o '"difference":[^,}]*' | wc -l)
	differ=$(printf '%s\n' "$json" | grep -o '"difference":[^,}]*' | grep -vc '"difference":0$' || true)
	[ "$tables" -gt 0 ] && [ "$differ" = 0 ] || fail "$f: rows differ from memory.db: $json"
	echo "   $f: restorable, the same rows as memory.db in all $tables tables"
done

rows() {
	sqlite3 "$1" "SELECT (SELECT count(*) FROM entities)||' entities, '||(SELECT count(*) FROM observations)||' observations, '||(SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'backup')||' FTS hits for \"backup\"'"
}
if have age && have sqlite3; then
	echo "6. Cross-checked with the standard tools: sqlite3 on the snapshot, age -d then sqlite3 on each backup:"
	check=$(sqlite3 "$work/snapshot.db" 'PRAGMA integrity_check')
	[ "$check" = ok ] || fail "snapshot.db: integrity_check said: $check"
	[ "$(rows "$work/snapshot.db")" = "$(rows "$work/memory.db")" ] || fail "snapshot.db: rows differ"
	echo "   snapshot.db: integrity_check ok, $(rows "$work/snapshot.db")"
	for f in memory.db.age pipeline.db.age; do
		age -d -i "$work/identity.txt" "$work/$f" > "$work/restored-$f.db"
		check=$(sqlite3 "$work/restored-$f.db" 'PRAGMA integrity_check')
		[ "$check" = ok ] || fail "$f: integrity_check said: $check"
		[ "$(rows "$work/restored-$f.db")" = "$(rows "$work/memory.db")" ] || fail "$f: rows differ"
		echo "   $f: age -d ok, integrity_check ok, $(rows "$work/restored-$f.db")"
	done
	checked="verify, and restore with age and sqlite3"
else
	if have age; then missing=sqlite3; elif have sqlite3; then missing=age; else missing="age and sqlite3"; fi
	echo "6. ($missing not installed: skipping the cross-check with the standard tools)"
	checked="verify"
fi

echo "7. A damaged copy is refused, and the message says what is wrong with it:"
size=$(wc -c < "$work/memory.db.age")
head -c $((size - 1000)) "$work/memory.db.age" > "$work/cut.db.age"
if "$bin/wm-verify" -q -i "$work/identity.txt" "$work/cut.db.age"; then
	fail "wm-verify accepted a truncated backup"
fi
echo "   (refused, as it must be)"

echo "8. Post-quantum: a backup to an age1pq1 key (ML-KEM-768 + X25519, as age 1.3's age-keygen -pq makes):"
pq=$("$bin/examples/make-key" --pq "$work/identity-pq.txt")
echo "   recipient: $(printf '%s' "$pq" | cut -c1-24)... ($(printf '%s' "$pq" | wc -c) characters)"
"$bin/workmem-backup" -q --db "$work/memory.db" --to "$work/memory-pq.db.age" --age-recipient "$pq"
echo "   $(head -c 80 "$work/memory-pq.db.age" | sed -n 2p | cut -c1-40)..."
"$bin/wm-verify" -q -i "$work/identity-pq.txt" "$work/memory-pq.db.age" || fail "the post-quantum backup does not verify"
echo "   memory-pq.db.age: verified with the post-quantum identity"

echo "9. A history: three backups into history/ (named memory-YYYYMMDDTHHMMSSZ.db.age, UTC), a second apart,"
echo "   then wm-prune --keep-last 2 --delete, saying which rule keeps what:"
mkdir -p "$work/history"
for i in 1 2 3; do
	"$bin/workmem-backup" -q --db "$work/memory.db" --to "$work/history/" --age-recipient "$recipient"
	[ "$i" = 3 ] || sleep 1
done
for f in "$work"/history/*; do echo "   $(basename "$f")"; done
[ "$(ls "$work/history" | wc -l)" = 3 ] || fail "history/ should hold three backups"
deleted=$("$bin/wm-prune" -v --keep-last 2 --delete "$work/history" 2>"$work/prune.log") ||
	fail "wm-prune failed: $(cat "$work/prune.log")"
sed 's/^/   /' "$work/prune.log"
echo "   deleted: $deleted"
[ "$(ls "$work/history" | wc -l)" = 2 ] || fail "history/ should hold two backups after pruning"
for f in "$work"/history/*; do
	"$bin/wm-verify" -q -i "$work/identity.txt" "$f" || fail "$f does not restore"
done
echo "   left: $(cd "$work/history" && echo *), both verified; workmem-backup --keep-last 2 does the same after each backup"

# Observations in a database, by sqlite3 or, without it, by our own tools.
observations() {
	if have sqlite3; then
		sqlite3 "$1" 'SELECT count(*) FROM observations'
	else
		"$bin/wm-snapshot" -q --db "$1" | "$bin/wm-seal" -q -r "$recipient" | "$bin/wm-verify" --json -i "$work/identity.txt" |
			grep -o '"name":"observations","rows":[0-9]*' | grep -o '[0-9]*$'
	fi
}
echo "10. The server crashes mid-work: half the observations deleted, committed to memory.db-wal, never checkpointed:"
before=$(observations "$work/memory.db")
echo "   $("$bin/examples/crash-writer" "$work/memory.db" 2>/dev/null || true)"
[ -s "$work/memory.db-wal" ] || fail "the crash left no WAL"
echo "   left behind: $(cd "$work" && ls memory.db memory.db-wal memory.db-shm | tr '\n' ' ')"
echo "   'age -d > memory.db' now would replay that WAL onto the restored file. wm-restore puts the backup back safely:"
"$bin/wm-restore" -i "$work/identity.txt" --db "$work/memory.db" "$work/memory.db.age"
after=$(observations "$work/memory.db")
kept=$(ls "$work"/memory.db.pre-restore-* | grep -v -e '-wal$' -e '-shm$' | head -1)
[ "$after" = "$before" ] || fail "restored: $after observations, the backup had $before"
[ ! -e "$work/memory.db-wal" ] || fail "an old WAL is beside the restored database"
echo "   memory.db: $after observations, as in the backup; no -wal beside it"
echo "   $(basename "$kept"): $(observations "$kept") observations, the crashed server's, kept with its -wal"

echo "Demo passed: the backups hold the same rows as the source and $checked; the history was pruned; the restore lost nothing. Files are in $work/."
