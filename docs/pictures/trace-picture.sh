#!/bin/sh
# Rebuilds docs/trace-json.png: the first three round trips of `run hello.elf --trace hello.json`, drawn by the
# trace viewer of chrome://tracing (Catapult's trace2html), screenshotted in headless Chromium.
#
# Needs: a built hybridvmm (dotnet build), python3, chromium, and a Catapult checkout, e.g.
#   git clone https://github.com/catapult-project/catapult && git -C catapult checkout 6fd8bbe723677254ff1130a1a416988b8b3e285e
# (the commit the committed picture was made with). Usage: docs/pictures/trace-picture.sh CATAPULT_DIR
set -eu
catapult=${1:?usage: $0 CATAPULT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

dotnet "$root/src/HybridVmm.Cli/bin/Debug/net10.0/hybridvmm.dll" run "$root/samples/guests/bin/hello.elf" --trace "$work/whole.json" > /dev/null
# Keep the metadata and every event up to the end of the third exit: the picture is about the first round trips.
python3 - "$work/whole.json" "$work/hello.json" <<'PY'
import json, sys
trace = json.load(open(sys.argv[1]))
events = trace["traceEvents"]
exits = [e for e in events if e.get("cat") == "exit" and e["ph"] == "X"]
end = exits[2]["ts"] + exits[2]["dur"]
trace["traceEvents"] = [e for e in events if e["ph"] == "M" or e.get("ts", 0) <= end]
json.dump(trace, open(sys.argv[2], "w"))
PY
(cd "$work" && python3 "$catapult/tracing/bin/trace2html" hello.json --output hello.html > /dev/null)
dotnet run "$here/trace-picture.cs" -- "$work/hello.html" "$root/docs/trace-json.png"
echo "wrote $root/docs/trace-json.png"
