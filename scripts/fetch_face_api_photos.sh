#!/usr/bin/env bash
# Fetch the six demo photos (group photos of real people) of the MIT npm package @vladmandic/face-api,
# same pinned version and sha512 integrity as scripts/fetch_face_api.sh, into
# $MAGEC_CACHE/photos/face-api-1.7.15 (default ~/.cache/magec/photos/...). Used only by the real-photo
# report (docs/results/real-photos.md); not part of `make install` or `make test`. Idempotent: a complete,
# unmodified folder (checked against the SHA256SUMS written at unpack time) is left alone.
set -euo pipefail

VERSION="1.7.15"
PACKAGE="@vladmandic/face-api@${VERSION}"
INTEGRITY="sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw=="
FILES=(
  demo/sample1.jpg
  demo/sample2.jpg
  demo/sample3.jpg
  demo/sample4.jpg
  demo/sample5.jpg
  demo/sample6.jpg
  LICENSE
)

CACHE="${MAGEC_CACHE:-$HOME/.cache/magec}"
DEST="$CACHE/photos/face-api-$VERSION"

die() { echo "fetch_face_api_photos: $*" >&2; exit 1; }

if [ -f "$DEST/SHA256SUMS" ] && (cd "$DEST" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1); then
  echo "fetch_face_api_photos: $DEST is complete"
  exit 0
fi
if [ -e "$DEST" ]; then
  die "$DEST exists but is incomplete or modified; move it away and run again"
fi

command -v npm >/dev/null || die "npm is not on PATH (apt-get install npm, or get the files another way)"
command -v node >/dev/null || die "node is not on PATH"

mkdir -p "$CACHE/photos"
WORK="$(mktemp -d "$CACHE/photos/.face-api-fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null) || die "npm pack $PACKAGE failed"
TARBALL="$WORK/vladmandic-face-api-$VERSION.tgz"
[ -f "$TARBALL" ] || die "npm pack did not write $(basename "$TARBALL")"

ACTUAL="$(node -e '
  const c = require("crypto"), fs = require("fs");
  process.stdout.write("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"));
' "$TARBALL")"
[ "$ACTUAL" = "$INTEGRITY" ] || die "$TARBALL: integrity $ACTUAL does not match the pinned $INTEGRITY"

mkdir "$WORK/out"
tar -xzf "$TARBALL" -C "$WORK/out" --no-same-owner --no-same-permissions "${FILES[@]/#/package/}" \
  || die "$TARBALL: does not hold the expected demo photos"
STAGE="$WORK/out/package"
(cd "$STAGE" && sha256sum "${FILES[@]}" > SHA256SUMS)
chmod -R u+rwX,go+rX "$STAGE"
mv -T "$STAGE" "$DEST" || die "could not move the files into $DEST"
echo "fetch_face_api_photos: wrote $DEST"
