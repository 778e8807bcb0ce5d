#!/bin/sh
# man_page.sh - man/ctrnn-loss.1 against the command's help: every option
# that `ctrnn-loss --help`, `ctrnn-loss eval --help` or `ctrnn-loss demo
# --help` shows is described in the man page, every option the man page
# names is in one of them, and every term type of `ctrnn-loss types` is
# named there.  (The options are compared as words, --long and -x, so that
# rewording either side does not matter; a new or removed option does.)
#
# Environment (set by `make check`): CRL_CLI, the command to test.
set -u
here=$(cd "$(dirname "$0")" && pwd)
man=$here/../man/ctrnn-loss.1
cli=${CRL_CLI:-./src/cli/ctrnn-loss}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The sanitizer build's setting for the command's short runs (scripts/check).
if [ -n "${CRL_CLI_ASAN_OPTIONS:-}" ]; then
    export ASAN_OPTIONS=$CRL_CLI_ASAN_OPTIONS
fi
[ -f "$man" ] || { echo "FAIL: no $man"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ctrnn-loss-man.XXXXXX") || exit 99
trap 'rm -rf "$work"' EXIT

# options: the option words of standard input, one a line, sorted.
options() {
    tr -s ' \t,[]|()' '\n\n\n\n\n\n\n\n' | sed -n 's/^\(--*[A-Za-z][A-Za-z0-9-]*\).*$/\1/p' \
        | grep -v -x -e '-np' | sort -u
}
for cmd in "" eval demo; do
    # shellcheck disable=SC2086 # $cmd: a command or nothing
    "$cli" $cmd --help >>"$work/help.txt" 2>&1 || { echo "FAIL: ctrnn-loss $cmd --help"; exit 1; }
done
options <"$work/help.txt" >"$work/help.opts"
# The man page's text without roff escapes and font changes: \- is -, \fB is
# nothing.
sed -e '/^\.\\"/d' -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' -e 's/\\//g' -e 's/^\.[A-Z]* //' "$man" \
    | options >"$work/man.opts"
[ -s "$work/help.opts" ] || { echo "FAIL: no options found in the help"; exit 1; }
status=0
for opt in $(comm -23 "$work/help.opts" "$work/man.opts"); do
    echo "FAIL: option $opt of ctrnn-loss --help is not in man/ctrnn-loss.1"
    status=1
done
for opt in $(comm -13 "$work/help.opts" "$work/man.opts"); do
    echo "FAIL: man/ctrnn-loss.1 names option $opt, which no --help shows"
    status=1
done
# Term types: the first word of each unindented line of `ctrnn-loss types`.
"$cli" types >"$work/types.txt" 2>&1 || { echo "FAIL: ctrnn-loss types"; exit 1; }
types=$(grep -v '^[[:space:]]' "$work/types.txt" | awk '{print $1}')
[ -n "$types" ] || { echo "FAIL: no types in ctrnn-loss types"; exit 1; }
for type in $types; do
    sed -n '/^\.SH TERM TYPES/,/^\.SH /p' "$man" | grep -q -w -- "$type" \
        || { echo "FAIL: term type $type is not in man/ctrnn-loss.1 (TERM TYPES)"; status=1; }
done
[ $status -eq 0 ] && echo "man page: $(wc -l <"$work/help.opts") options, $(echo "$types" | wc -w) types, all described"
exit $status
