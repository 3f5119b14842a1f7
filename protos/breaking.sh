#!/bin/sh
# `buf breaking`: the wire API in protos/ against an earlier state of it in this clone's own
# git history (no network). The base, in order:
#   - on a branch that is not main: its merge base with main (everything the branch changes);
#   - on main: the last release tag (v*), the state clients were promised;
#   - else the commit before HEAD (main with no tag yet: what the last commit changed).
# A clone with none of these (a shallow clone of one commit) says so and checks nothing.
set -eu
BUF=${BUF:-buf}
head=$(git rev-parse HEAD)
main=$(git rev-parse -q --verify main || git rev-parse -q --verify origin/main || true)
if [ -n "$main" ] && [ "$head" != "$main" ]; then
    base=$(git merge-base HEAD "$main")
    why="merge base with main"
elif tag=$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null); then
    base=$(git rev-parse "$tag^{commit}")
    why="last release tag $tag"
elif base=$(git rev-parse -q --verify HEAD~1); then
    why="the commit before HEAD"
else
    echo "buf breaking: no earlier commit in this clone to compare with; skipped"
    exit 0
fi
echo "buf breaking against $base ($why)"
exec "$BUF" breaking --against "$(git rev-parse --git-common-dir)#ref=$base"
