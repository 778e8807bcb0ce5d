#!/bin/sh
# fuzz_link.sh - the fuzz targets built from the sources scripts/fuzz builds
# them from (scripts/fuzz --sources TARGET: outside the library), with the
# build's compiler and without libFuzzer, then run on their seed corpora.  A
# term that starts calling into a file the list lacks fails here, in make
# check, rather than only in CI's libFuzzer run.
set -eu
top=${srcdir:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# As in scripts/fuzz: none of configure's choices matter to the parsers.
echo "/* tests/fuzz_link.sh: no configure-time choices */" >"$tmp/config.h"
# -O0: this checks what links, not how fast.
cc="$CRL_TEST_CC -O0 -I$tmp -I$top/include -I$top/src -I$top/tests/fuzz"
for target in $("$top/scripts/fuzz" --targets); do
    sources=$("$top/scripts/fuzz" --sources "$target")
    echo "fuzz_link.sh: linking replay_$target from $(echo "$sources" | wc -l) sources"
    # shellcheck disable=SC2086
    $cc -o "$tmp/replay_$target" "$top/tests/fuzz/fuzz_$target.c" "$top/tests/fuzz/replay.c" \
        $sources $CRL_TEST_LIBS
    "$tmp/replay_$target" "$top/tests/fuzz/corpus/$target"
done
