#!/bin/sh
# Example grader in POSIX sh: passes when the sandbox holds at least one Deployment.
#
# It follows the same contract as the built-in Python graders: the request {"snapshot": {...}, "params": {...}}
# arrives as JSON on stdin, the checks go to stdout as {"checks": [...]}, and the exit status is 0. It uses only
# POSIX tools (tr, grep, sed); a real shell grader would parse JSON with jq. The snapshot reaches graders normalised
# by labctl, so every resource object starts with "kind", "name", "labels" (docs/SNAPSHOT.md), while references
# such as a pod's "controller" hold only kind and name: that is how resources are told apart from references here.
set -eu

# One JSON object per line, whitespace gone (Kubernetes names hold no spaces or quotes).
objects=$(tr -d ' \t\r\n' | tr '{' '\n')
deployments=$(printf '%s\n' "$objects" | sed -n 's/^"kind":"Deployment","name":"\([^"]*\)","labels":$/Deployment\/\1/p')
count=$(printf '%s\n' "$objects" | grep -c '^"kind":"Deployment","name":"[^"]*","labels":$' || true)

title="The sandbox runs at least one Deployment"
if [ "$count" -gt 0 ]; then
    listed=$(printf '%s\n' "$deployments" | tr '\n' ' ' | sed 's/ *$//; s/ /, /g')
    printf '{"checks": [{"id": "has-deployment", "title": "%s", "passed": true, "score": 1, "max_score": 1, ' "$title"
    printf '"feedback": "Found %s Deployment(s): %s.", "evidence": []}]}\n' "$count" "$listed"
else
    printf '{"checks": [{"id": "has-deployment", "title": "%s", "passed": false, "score": 0, "max_score": 1, ' "$title"
    printf '"feedback": "The sandbox has no Deployment: create one.", '
    printf '"evidence": [{"resource": "Deployment/*", "problem": "no Deployment in the snapshot"}]}]}\n'
fi
