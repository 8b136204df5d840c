#!/bin/sh
# The C++ sources as .clang-format says (test "clang-format", suite
# "style"): lists every file clang-format would change and fails if any.
# Skipped (77) without clang-format 14, Debian 12's: another version may
# lay out the same code otherwise.  Fix a file with `clang-format -i FILE`.
#   tests/check_format.sh SOURCE_ROOT
set -eu
src=${1:?usage: check_format.sh SOURCE_ROOT}
cf=$(command -v clang-format || true)
if [ -z "$cf" ]; then
    echo "clang-format not found (Debian package clang-format): not checked"
    exit 77
fi
version=$("$cf" --version)
case $version in
*"version 14."*) ;;
*) echo "$version: not Debian 12's clang-format 14, not checked"; exit 77 ;;
esac
cd "$src"
bad=0
for f in $(find lib cli daemon tests -name '*.cpp' -o -name '*.hpp' | sort); do
    if ! "$cf" --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f"
        bad=$((bad + 1))
    fi
done
if [ "$bad" -ne 0 ]; then
    echo "$bad file(s) differ from .clang-format; run clang-format -i on them"
    exit 1
fi
echo "every C++ source is as .clang-format lays it out"
