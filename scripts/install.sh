#!/usr/bin/env bash
# Installs prebuilt do-release tools, checking the archive against the SHA-256 committed beside
# this script (dist/checksums/vVERSION.sha256) before anything is unpacked. The GitHub Action
# (action.yml) runs it; it also works by hand:
#   DO_RELEASE_VERSION=0.1.0 bash scripts/install.sh
#
# Settings (environment):
#   DO_RELEASE_VERSION       the version to install (0.1.0 or v0.1.0); required
#   DO_RELEASE_TOOLS         space- or comma-separated tools, or "all" (default)
#   DO_RELEASE_INSTALL_DIR   where the tools go (default: $RUNNER_TOOL_CACHE/do-release/VERSION/bin, else ~/.local/bin)
#   DO_RELEASE_DOWNLOAD_URL  where the archives are (default: the GitHub release of that version)
#   DO_RELEASE_REPOSITORY    owner/name on GitHub (default: $GITHUB_ACTION_REPOSITORY)
#   DO_RELEASE_TARGET        the target triple (default: this machine's)
set -euo pipefail

fail() {
  echo "do-release install: error: $*" >&2
  exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${DO_RELEASE_VERSION:-}
# The action pinned by commit (uses: OWNER/do-release@<40 hex>) passes that commit as its ref,
# or nothing at all: the release it belongs to is the one named in dist/VERSION, which each
# release commits beside its checksums.
if [[ -z "$version" || "$version" =~ ^[0-9a-f]{40}$ ]] && [ -f "$here/dist/VERSION" ]; then
  version=$(head -n 1 "$here/dist/VERSION")
fi
version=${version#v}
[ -n "$version" ] || fail "no version given: set DO_RELEASE_VERSION (or the action's version input)"
case "$version" in
  *[!0-9A-Za-z.+-]*) fail "invalid version \"$version\"" ;;
esac
tag="v$version"

target=${DO_RELEASE_TARGET:-}
if [ -z "$target" ]; then
  case "$(uname -s)/$(uname -m)" in
    Linux/x86_64) target=x86_64-unknown-linux-musl ;;
    Linux/aarch64 | Linux/arm64) target=aarch64-unknown-linux-musl ;;
    Darwin/arm64) target=aarch64-apple-darwin ;;
    Darwin/x86_64) target=x86_64-apple-darwin ;;
    *) fail "no prebuilt do-release for $(uname -s)/$(uname -m); use the action's version: source (cargo install --locked)" ;;
  esac
fi
archive="do-release-$version-$target.tar.gz"

sums="$here/dist/checksums/$tag.sha256"
[ -f "$sums" ] || fail "no checksums for $tag in this action ($sums): pin a released version, or use version: source"
expected=$(awk -v name="$archive" '$2 == name || $2 == "*" name { print $1 }' "$sums")
[ -n "$expected" ] || fail "no prebuilt do-release $tag for $target (not in $sums); use version: source"
case "$expected" in
  *[!0-9a-f]* | "") fail "the checksum for $archive in $sums is not a SHA-256" ;;
esac
[ "${#expected}" -eq 64 ] || fail "the checksum for $archive in $sums is not a SHA-256"

repository=${DO_RELEASE_REPOSITORY:-${GITHUB_ACTION_REPOSITORY:-}}
base=${DO_RELEASE_DOWNLOAD_URL:-}
if [ -z "$base" ]; then
  [ -n "$repository" ] || fail "set DO_RELEASE_REPOSITORY (owner/name) or DO_RELEASE_DOWNLOAD_URL"
  base="https://github.com/$repository/releases/download/$tag"
fi
# The host is the whole authority: no user info (http://127.0.0.1:80@elsewhere/ goes elsewhere).
if ! [[ "$base" =~ ^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[^@]*)?$ || "$base" =~ ^http://(127\.0\.0\.1|localhost)(:[0-9]+)?(/[^@]*)?$ ]]; then
  fail "refusing to download from $base: https only (or http to 127.0.0.1), with no user info"
fi

tools=${DO_RELEASE_TOOLS:-all}
tools=${tools//,/ }
[ "$tools" = all ] && tools="do-tag do-gc-wait do-deploy do-prune do-login do-sim"
for tool in $tools; do
  case " do-tag do-gc-wait do-deploy do-prune do-login do-sim " in
    *" $tool "*) ;;
    *) fail "unknown tool \"$tool\": choose from do-tag do-gc-wait do-deploy do-prune do-login do-sim, or all" ;;
  esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl --fail --silent --show-error --location --retry 3 --proto '=https,http' \
  --output "$work/$archive" "$base/$archive" || fail "cannot download $base/$archive"
if command -v sha256sum >/dev/null 2>&1; then
  actual=$(sha256sum "$work/$archive" | awk '{ print $1 }')
else
  actual=$(shasum -a 256 "$work/$archive" | awk '{ print $1 }')
fi
[ "$actual" = "$expected" ] || fail "checksum mismatch for $archive: expected $expected, got $actual; nothing was installed"

tar -xzf "$work/$archive" -C "$work"
dest=${DO_RELEASE_INSTALL_DIR:-}
if [ -z "$dest" ]; then
  if [ -n "${RUNNER_TOOL_CACHE:-}" ]; then
    dest="$RUNNER_TOOL_CACHE/do-release/$version/bin"
  else
    dest="$HOME/.local/bin"
  fi
fi
mkdir -p "$dest"
for tool in $tools; do
  entry="$work/do-release-$version-$target/$tool"
  # A regular file only: a link in the archive would install whatever it points at.
  if [ ! -f "$entry" ] || [ -L "$entry" ]; then
    fail "$archive has no $tool as a regular file; nothing was installed"
  fi
done
for tool in $tools; do
  install -m 0755 "$work/do-release-$version-$target/$tool" "$dest/$tool"
done
if [ -n "${GITHUB_PATH:-}" ]; then
  echo "$dest" >> "$GITHUB_PATH"
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "bin-dir=$dest" >> "$GITHUB_OUTPUT"
fi
echo "do-release install: $tag ($target) checked and installed into $dest: $tools"
