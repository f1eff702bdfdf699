#!/usr/bin/env python3
"""Counts the real test cases of a `meson test` run from its testlog.json:
one per TAP line of each suite (Catch2 test cases, Python test methods). A
suite that died without reporting all its planned cases counts them as failed.
Prints 'N passed, N failed' as the last line."""
import json
import re
import sys

passed = failed = skipped = 0
for line in open(sys.argv[1], encoding="utf-8"):
    if not line.strip():
        continue
    try:
        entry = json.loads(line)
    except ValueError:  # a damaged log: count it against the run rather than drop it
        print("unreadable test log entry: " + line[:80].strip())
        failed += 1
        continue
    out = entry.get("stdout") or ""
    ok = len(re.findall(r"^ok \d+", out, re.M))
    nok = len(re.findall(r"^not ok \d+", out, re.M))
    skip = len(re.findall(r"^ok \d+ .*# SKIP", out, re.M | re.I))
    plan = re.search(r"^1\.\.(\d+)", out, re.M)
    planned = int(plan.group(1)) if plan else 0
    missing = max(planned - ok - nok, 0)
    if entry.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and nok == 0 and missing == 0:
        missing = 1  # crashed or timed out before saying anything useful
    if missing:
        print("%s: %d test case(s) did not report (%s)" % (entry["name"], missing, entry.get("result")))
    passed += ok - skip
    skipped += skip
    failed += nok + missing
if skipped:
    print("%d skipped (see the log for why)" % skipped)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
