#!/bin/sh
# A hostile grader in POSIX sh, for the jail of a controller that is NOT root (a user namespace, no uid change).
# Reads the request from stdin (ignored) and prints one line per fact or attempt: "name: value". Its first argument
# is a file it must not be able to read, its second a directory it must not be able to write.
cat >/dev/null
echo "uid: $(id -u)"
echo "pids: $(ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\n' ' ')"
if cat "$1" >/dev/null 2>&1; then echo "read secret: done"; else echo "read secret: failed"; fi
if echo x 2>/dev/null >"$2/hostile-sh"; then echo "write own dir: done"; else echo "write own dir: failed"; fi
if unshare -U true 2>/dev/null; then echo "nested user namespace: done"; else echo "nested user namespace: failed"; fi
echo "pid 1 environ: $(tr '\0' '\n' </proc/1/environ 2>/dev/null | cut -d= -f1 | tr '\n' ' ')"
echo "interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\n" " ")"
