#!/bin/sh
# release.sh: the do-release chain as a POSIX shell pipeline, for app repositories that are not
# Rust. Run it in the app repository:
#
#   DO_REPOSITORY=web DO_APP=shop scripts/release.sh
#
# Settings (environment):
#   DO_REPOSITORY        required: the DOCR repository the app runs
#   DO_APP               required: the App Platform app (name or id)
#   DO_REGISTRY          the registry; empty finds the account's only one
#   DO_BUMP              patch | minor | major | auto (default auto)
#   DO_ALLOW_BRANCH      release only from this branch glob (default: any)
#   DO_KEEP_LAST         do-prune --keep-last (default: do-prune's own, 10)
#   DO_INTERVAL          first pause between looks at GC and deployments (default 5s)
#   DO_BUILDER           docker (default) or simulator (do-sim push, against a do-sim)
#   RELEASE_BUILD_PUSH   a command called as `CMD IMAGE TAG` that builds and pushes the image
#                        (default: docker build and docker push; log in first with
#                        `do-login --expiry 10m`, which writes credentials that expire)
#   DIGITALOCEAN_ACCESS_TOKEN, DIGITALOCEAN_API_URL as for every tool.
#
# Each tool copies its input and appends its record, so the report is the pipeline's output
# (RELEASE_REPORT, by default a file under $TMPDIR). A step runs only when every step before it succeeded; the script
# exits with the first failing step's exit code. The shell cannot resolve digests, so there is
# no image record: do-deploy resolves the tag record's tag to its digest itself.
set -eu

: "${DO_REPOSITORY:?set DO_REPOSITORY to the DOCR repository}"
: "${DO_APP:?set DO_APP to the App Platform app}"
DO_REGISTRY=${DO_REGISTRY:-}
DO_BUMP=${DO_BUMP:-auto}
DO_ALLOW_BRANCH=${DO_ALLOW_BRANCH:-}
DO_KEEP_LAST=${DO_KEEP_LAST:-}
DO_INTERVAL=${DO_INTERVAL:-5s}
DO_BUILDER=${DO_BUILDER:-docker}
# The report goes outside the app repository unless asked, so the release leaves it clean.
REPORT=${RELEASE_REPORT:-${TMPDIR:-/tmp}/do-release-report.$$.jsonl}

state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT

registry_flag() {
    if [ -n "$DO_REGISTRY" ]; then printf -- '--registry\n%s\n' "$DO_REGISTRY"; fi
}

# What docker build and push make, in a do-sim: a multi-platform image labelled with the commit.
simulator_push() {
    do-sim push --registry "$registry" --repository "$DO_REPOSITORY" --tag "$2" --platform linux/amd64 --platform linux/arm64 \
        --label "org.opencontainers.image.revision=$(git rev-parse HEAD)" > /dev/null
}

default_build_push() {
    docker build --label "org.opencontainers.image.revision=$(git rev-parse HEAD)" --tag "$1" . >&2 || return $?
    docker push "$1" >&2
}

# step NAME COMMAND...: reads the whole stream, runs COMMAND on it unless a step before failed,
# and records a failure instead of passing half a report on.
step() {
    name=$1
    shift
    cat > "$state/$name.in"
    if ls "$state"/*.failed >/dev/null 2>&1; then
        return 0
    fi
    code=0
    "$@" < "$state/$name.in" || code=$?
    if [ "$code" -ne 0 ]; then
        echo "$code" > "$state/$name.failed"
    fi
    return 0
}

# The tag from the last tag record (records are single-line JSON written by do-tag).
last_tag() {
    sed -n 's/.*"kind":"tag","v":1,"data":{"tag":"\([^"]*\)".*/\1/p' "$1" | tail -n 1
}

build_and_push() {
    tag=$(last_tag "$state/push.in")
    if [ -z "$tag" ]; then
        echo "release.sh: no tag record reached the push step" >&2
        return 2
    fi
    registry=$DO_REGISTRY
    if [ -z "$registry" ]; then
        registry=$(sed -n 's/.*"kind":"gc-wait","v":1,"data":{"registry":"\([^"]*\)".*/\1/p' "$state/push.in" | tail -n 1)
    fi
    image="registry.digitalocean.com/$registry/$DO_REPOSITORY:$tag"
    # Wait again right before the push: a GC may have started since the first wait.
    # shellcheck disable=SC2046
    # (set -e does not apply inside a function run as part of `||`, so each failure returns.)
    do-gc-wait --registry "$registry" --interval "$DO_INTERVAL" --input "$state/push.in" > "$state/push.out" || return $?
    echo "release.sh: building and pushing $image" >&2
    if [ -n "${RELEASE_BUILD_PUSH:-}" ]; then
        $RELEASE_BUILD_PUSH "$image" "$tag" >&2 || return $?
    elif [ "$DO_BUILDER" = simulator ]; then
        simulator_push "$image" "$tag" || return $?
    else
        default_build_push "$image" "$tag" || return $?
    fi
    cat "$state/push.out"
}

keep_last() {
    if [ -n "$DO_KEEP_LAST" ]; then printf -- '--keep-last\n%s\n' "$DO_KEEP_LAST"; fi
}

allow_branch() {
    if [ -n "$DO_ALLOW_BRANCH" ]; then printf -- '--allow-branch\n%s\n' "$DO_ALLOW_BRANCH"; fi
}

# shellcheck disable=SC2046
: | step gc-wait do-gc-wait $(registry_flag) --interval "$DO_INTERVAL" \
  | step tag do-tag --bump "$DO_BUMP" $(allow_branch) \
  | step push build_and_push \
  | step deploy do-deploy --app "$DO_APP" --repository "$DO_REPOSITORY" $(registry_flag) --interval "$DO_INTERVAL" --rollback-on-failure \
  | step prune do-prune $(registry_flag) $(keep_last) --execute \
  > "$REPORT"

for failed in "$state"/*.failed; do
    [ -e "$failed" ] || continue
    name=$(basename "$failed" .failed)
    echo "release.sh: step $name failed (exit $(cat "$failed")); the report is $REPORT" >&2
    exit "$(cat "$failed")"
done
echo "release.sh: released $(last_tag "$REPORT"); the report is $REPORT" >&2
