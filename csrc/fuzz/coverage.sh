#!/usr/bin/env bash
# Line and branch coverage of the fast path reached by a fuzz target's corpus (source-based, llvm-cov):
#   csrc/fuzz/coverage.sh TARGET CORPUS_DIR... [-- FILE.c ...]
#   csrc/fuzz/coverage.sh fuzz_parse tests/fuzz/corpus/fuzz_parse -- parse.c offload.c csum.c
# Builds TARGET without sanitizers but with coverage mapping into build/fuzz-cov, runs every input once, and prints
# llvm-cov's report for the named csrc files (default: all of them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
csrc="$(dirname "$here")"
root="$(dirname "$csrc")"
out="$root/build/fuzz-cov"
target="$1"
shift
dirs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do dirs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
files=()
for f in "$@"; do files+=("$csrc/$f"); done
[ ${#files[@]} -gt 0 ] || files=("$csrc"/*.c)

cc="${CC:-clang}"
llvm_suffix="$("$cc" --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p')"
profdata="$(command -v llvm-profdata || command -v "llvm-profdata-$llvm_suffix")"
cov="$(command -v llvm-cov || command -v "llvm-cov-$llvm_suffix")"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/pyswitch/__init__.py")"

mkdir -p "$out"
"$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE=1 "-DPS_VERSION_STR=\"$version\"" -I"$csrc" \
    -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping \
    "$here/$target.c" "$csrc"/*.c -lpthread -o "$out/$target"
rm -f "$out"/*.profraw
LLVM_PROFILE_FILE="$out/$target.profraw" "$out/$target" -runs=0 "${dirs[@]}" >"$out/$target.log" 2>&1
"$profdata" merge -sparse "$out/$target.profraw" -o "$out/$target.profdata"
"$cov" report "$out/$target" -instr-profile="$out/$target.profdata" "${files[@]}"
