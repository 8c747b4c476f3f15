#!/usr/bin/env python3
# Share of a run's answers that repeat the first line of their prompt as the model receives it
# (the system prompt when one is sent, else the user prompt): the answer contains that line
# (ignoring case), or the answer's first line starts with a near copy of it (difflib ratio
# >= 0.8 ignoring case; the 270M model copies the nonce line with its digits changed).
#   sweep show RUN --json | python3 scripts/echo_share.py
# (README, "The quickstart's prompts"; standard library only.)
import difflib, json, sys
n = echo = 0
for line in sys.stdin:
    c = json.loads(line)
    if c["phase"] == "reload" or c["response"] is None:
        continue
    b = c["request"]["body"]
    if "messages" in b:
        prompt = b["messages"][0]["content"]
    else:
        prompt = b.get("system") or b["prompt"]
    first = next(l.strip() for l in prompt.splitlines() if l.strip()).lower()
    answer = c["response"].lower()
    head = next((l.strip() for l in answer.splitlines() if l.strip()), "")
    n += 1
    echo += first in answer or difflib.SequenceMatcher(None, first, head[: len(first)]).ratio() >= 0.8
print(f"{echo}/{n} answers repeat the first line of their prompt ({100 * echo / max(n, 1):.0f}%)")
