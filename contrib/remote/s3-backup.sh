#!/usr/bin/env bash
# s3-backup.sh: a workmem backup straight to S3 with the AWS CLI, committed
# only when every stage succeeded. Copy it anywhere on PATH; it needs bash,
# wm-snapshot, wm-seal, aws, and wm-prune when --keep-* is given.
#
# The backup is uploaded as NAME.partial (`aws s3 cp -`), a name wm-prune
# never counts, and renamed to NAME (`aws s3 mv`, a server-side copy, then
# the delete of NAME.partial) only when wm-snapshot, wm-seal and the upload
# all exited 0. A producer that dies mid-stream, a truncated
# input or a full remote therefore never replaces or hides a good backup: a
# receiver cannot tell a truncated age file from a whole one, only the
# sender's exit statuses can. See docs/remote.md.
set -u
set -o pipefail
prog=${0##*/}

usage() {
	cat <<EOF
Usage: $prog [OPTIONS] s3://BUCKET[/PREFIX]

Back up a workmem database to s3://BUCKET/PREFIX/ as
STEM-YYYYMMDDTHHMMSSZ.db.age. The upload goes to NAME.partial and is
renamed to NAME only when wm-snapshot, wm-seal and aws s3 cp all
succeeded; on failure nothing is committed, the partial upload is removed,
and the exit status is 1 (2 for a usage error).

Options:
  -r, --recipient R        encrypt to R (wm-seal -r); repeatable
  -R, --recipients-file F  encrypt to the recipients in F (wm-seal -R); repeatable
      --db PATH            the database (wm-snapshot --db)
      --env-file FILE      load MEMORY_DB_PATH from FILE (wm-snapshot --env-file)
      --stem STEM          the name's stem (default: the database's name
                           without .db, as workmem-backup names it; else memory)
      --name NAME          the final name (default STEM-YYYYMMDDTHHMMSSZ.db.age, UTC now)
      --keep-* VALUE       any of wm-prune's --keep-* options (--keep-last N,
                           --keep-daily N, --keep-within DURATION, ...): after
                           a commit, apply this policy to the remote's
                           listing (aws s3 ls | wm-prune - | aws s3 rm)
  -h, --help               print this help

The AWS CLI is configured as usual (~/.aws, AWS_PROFILE, AWS_ENDPOINT_URL
for an S3-compatible service, ...). Streams over 50 GB need
AWS_S3_EXPECTED_SIZE=BYTES (passed as aws s3 cp --expected-size).
EOF
}

die_usage() {
	echo "$prog: $1 (see $prog --help)" >&2
	exit 2
}

seal_args=()
snap_args=()
keep_args=()
db=
stem=
name=
dest=
while [ $# -gt 0 ]; do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--keep-*=*) keep_args+=("$1"); shift ;;
	-r | --recipient | -R | --recipients-file | --db | --env-file | --stem | --name | --keep-*)
		[ $# -ge 2 ] || die_usage "$1 needs a value"
		case $1 in
		-r | --recipient) seal_args+=(-r "$2") ;;
		-R | --recipients-file) seal_args+=(-R "$2") ;;
		--db) db=$2; snap_args+=(--db "$2") ;;
		--env-file) snap_args+=(--env-file "$2") ;;
		--stem) stem=$2 ;;
		--name) name=$2 ;;
		*) keep_args+=("$1" "$2") ;;
		esac
		shift 2 ;;
	--) shift; break ;;
	-*) die_usage "unknown option $1" ;;
	*) [ -z "$dest" ] || die_usage "one destination only, got $dest and $1"; dest=$1; shift ;;
	esac
done
if [ $# -gt 0 ]; then
	if [ -n "$dest" ] || [ $# -ne 1 ]; then die_usage "one destination only"; fi
	dest=$1
fi
[ -n "$dest" ] || die_usage "no destination: give s3://BUCKET[/PREFIX]"
case $dest in
s3://?*) ;;
*) die_usage "$dest: not an s3://BUCKET[/PREFIX] address" ;;
esac
[ ${#seal_args[@]} -gt 0 ] || die_usage "no recipient: give -r RECIPIENT or -R FILE"
case $name in
*/*) die_usage "--name $name: a name, not a path" ;;
.partial | *.partial) die_usage "--name $name: .partial is the suffix of uploads in progress" ;;
esac

for tool in wm-snapshot wm-seal aws; do
	command -v "$tool" >/dev/null 2>&1 || { echo "$prog: $tool not found on PATH: install it or add its directory to PATH" >&2; exit 1; }
done
if [ ${#keep_args[@]} -gt 0 ]; then
	if ! command -v wm-prune >/dev/null 2>&1; then
		echo "$prog: wm-prune not found on PATH (needed by --keep-*): install it or add its directory to PATH" >&2
		exit 1
	fi
	# The policy is checked before anything runs, not after the commit.
	if ! why=$(wm-prune -q "${keep_args[@]}" - </dev/null 2>&1); then
		echo "$prog: wm-prune refuses the policy: ${why#wm-prune: }" | head -n 1 >&2
		exit 2
	fi
fi

if [ -z "$name" ]; then
	if [ -z "$stem" ]; then
		src=${db:-${MEMORY_DB_PATH:-memory.db}}
		stem=${src##*/}
		stem=${stem%.db}
		[ -n "$stem" ] || stem=memory
	fi
	name="$stem-$(date -u +%Y%m%dT%H%M%SZ).db.age"
fi
case $dest in
*/) dir=$dest ;;
*) dir=$dest/ ;;
esac
size_args=()
if [ -n "${AWS_S3_EXPECTED_SIZE:-}" ]; then
	size_args=(--expected-size "$AWS_S3_EXPECTED_SIZE")
fi
final=$dir$name
partial=$final.partial

# The one pipeline; each stage's status is read before anything else runs.
wm-snapshot ${snap_args[@]+"${snap_args[@]}"} | wm-seal -q "${seal_args[@]}" |
	aws s3 cp --only-show-errors ${size_args[@]+"${size_args[@]}"} - "$partial"
status=("${PIPESTATUS[@]}")
stages=(wm-snapshot wm-seal "aws s3 cp")
failed=
for i in 0 1 2; do
	if [ "${status[$i]}" != 0 ]; then
		failed="$failed, ${stages[$i]} exited ${status[$i]}"
	fi
done
if [ -n "$failed" ]; then
	if aws s3 rm --only-show-errors "$partial" >/dev/null 2>&1; then
		left="the partial upload was removed"
	else
		left="a partial upload may remain as $partial (never counted; wm-prune reports it)"
	fi
	echo "$prog: ${failed#, }: nothing committed as $final; $left" >&2
	exit 1
fi

if ! aws s3 mv --only-show-errors "$partial" "$final"; then
	echo "$prog: aws s3 mv $partial $final failed: nothing committed; the complete upload stays as $partial (rename it by hand to keep it)" >&2
	exit 1
fi

if [ ${#keep_args[@]} -gt 0 ]; then
	# Names wm-prune drops: only committed backups are counted, never a .partial.
	# `aws s3 ls` prints DATE TIME SIZE NAME, and PRE for a sub-prefix.
	if ! drop=$(aws s3 ls "$dir" | sed -n 's/^[0-9-]\{10\} [0-9:]\{8\} *[0-9][0-9]* //p' | wm-prune -q "${keep_args[@]}" -); then
		echo "$prog: committed $final, but listing or judging $dir for pruning failed: nothing pruned" >&2
		exit 1
	fi
	if [ -n "$drop" ]; then
		while IFS= read -r old; do
			if ! aws s3 rm --only-show-errors "$dir$old"; then
				echo "$prog: committed $final, but aws s3 rm $dir$old failed: some old backups may remain" >&2
				exit 1
			fi
		done <<<"$drop"
	fi
fi
exit 0
