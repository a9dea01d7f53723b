#!/bin/sh
# --no-python worker: NUL-separated environment and argv into $COMPAT_DUMP_DIR.
set -eu
env -0 > "$COMPAT_DUMP_DIR/rank$RANK.env0"
printf '%s\0' "$0" "$@" > "$COMPAT_DUMP_DIR/rank$RANK.argv0"
