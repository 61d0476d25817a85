#!/usr/bin/env bash
# The ros-* wheels' exported CMake files hard-code the manylinux build interpreter's include paths
# (/opt/python/cp311-cp311/...). Point them at this venv's Python and numpy headers.
# Re-run after any pip install that adds or reinstalls ros-* message packages. Idempotent.
set -euo pipefail
venv=$(cd "${1:-.venv}" && pwd)
py="$venv/bin/python"
py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
files=$(grep -rlE '/opt/python/cp311-cp311/(include/python3\.11|lib/python3\.11/site-packages/numpy/_core/include)' \
        "$venv/share" --include='*.cmake' 2>/dev/null || true)
[ -z "$files" ] && exit 0
# shellcheck disable=SC2086
sed -i -e "s#/opt/python/cp311-cp311/lib/python3\.11/site-packages/numpy/_core/include#${np_inc}#g" \
       -e "s#/opt/python/cp311-cp311/include/python3\.11#${py_inc}#g" $files
echo "fixed $(echo "$files" | wc -l) CMake export files in $venv/share"
