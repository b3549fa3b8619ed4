#!/usr/bin/env bash
# Builds the libFuzzer targets of the C fast path (csrc/fuzz/fuzz_*.c) with AddressSanitizer and
# UndefinedBehaviorSanitizer, into OUTDIR (default build/fuzz at the top of the tree):
#   csrc/fuzz/build.sh [OUTDIR]
#   OUTDIR/fuzz_parse OUTDIR/corpus... -max_total_time=600    a longer run (docs/RELIABILITY.md "Fuzzing and sanitizers")
# The fast path's sources are compiled once (instrumented for coverage, not linked with libFuzzer's main) into a
# static archive that every target links.  UBSan stops at the first report (-fno-sanitize-recover), so a fuzz
# run fails on undefined behaviour as it does on a memory error.  CC (default clang) can be another clang.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
csrc="$(dirname "$here")"
root="$(dirname "$csrc")"
out="${1:-$root/build/fuzz}"
cc="${CC:-clang}"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/pyswitch/__init__.py")"

sanitize="address,undefined"
cflags=(-g -O1 -std=gnu11 -Wall -Wextra -Wno-unused-parameter -fno-omit-frame-pointer
        -fno-sanitize-recover=all -D_GNU_SOURCE=1 "-DPS_VERSION_STR=\"$version\"" -I"$csrc")

# Runs "$@" in the background; wait_all fails if any of them did.
pids=()
spawn() { "$@" & pids+=($!); }
wait_all() {
    local failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    pids=()
    return "$failed"
}

mkdir -p "$out/obj"
objs=()
for src in "$csrc"/*.c; do
    obj="$out/obj/$(basename "${src%.c}").o"
    # Rebuild only what changed: CI builds once per run, a developer many times.
    if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find "$csrc" -maxdepth 1 -name '*.h' -newer "$obj")" ] \
        || [ "$0" -nt "$obj" ]; then
        spawn "$cc" "${cflags[@]}" -fsanitize="fuzzer-no-link,$sanitize" -c "$src" -o "$obj"
    fi
    objs+=("$obj")
done
wait_all
rm -f "$out/libpyswitch_fuzz.a"
ar rcs "$out/libpyswitch_fuzz.a" "${objs[@]}"

for target in "$here"/fuzz_*.c; do
    name="$(basename "${target%.c}")"
    spawn "$cc" "${cflags[@]}" -fsanitize="fuzzer,$sanitize" "$target" "$out/libpyswitch_fuzz.a" -lpthread \
        -o "$out/$name"
done
wait_all
echo "fuzz targets in $out: $(cd "$out" && ls fuzz_* | tr '\n' ' ')"
