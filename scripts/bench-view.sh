#!/bin/bash
# The cost of handing a 1 GB stored output to a command stage (issue #12):
# `ingest` stores 1,300 digit images as 512x512 RGB (1.02 GB), then a
# command reads it through `${data.dataset}` (a view: a reflink or a copy
# of the stored objects) against the same command without the reference.
# Usage: scripts/bench-view.sh TUNEFLOW [WORKDIR]
set -euo pipefail
B=$(realpath "$1")
work=${2:-$(mktemp -d)}
mkdir -p "$work" && cp "$(dirname "$0")/bench-view.toml" "$work/p.toml" && cd "$work"
[ -d fixtures ] || "$B" fixtures --out fixtures --no-speakers --digits-per-class 130 >/dev/null
"$B" run p.toml >/dev/null 2>&1
for _ in 1 2 3; do
  "$B" run --json p.toml --force read --force plain 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e["event"] == "stage-finished" and e["stage"] in ("read", "plain"):
        print(e["stage"], round(e["seconds"], 3))'
done
