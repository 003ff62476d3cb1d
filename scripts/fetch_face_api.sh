#!/usr/bin/env bash
# Fetch the two small face networks of the MIT npm package @vladmandic/face-api (pinned version and
# sha512 integrity) into magec's weights folder: $MAGEC_WEIGHTS or ~/.cache/magec/weights.
# Only the expression and age/gender manifests + shards and the licence are unpacked. With the argument
# `photos`: its six demo photos instead, into $MAGEC_CACHE/photos (default ~/.cache/magec/photos). Idempotent: a
# complete, unmodified folder (checked against the SHA256SUMS written at unpack time) is left alone.
set -euo pipefail

VERSION="1.7.15"
PACKAGE="@vladmandic/face-api@${VERSION}"
INTEGRITY="sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw=="
if [ "${1:-}" = "photos" ]; then
  # The six demo photos (group photos of real people), for the real-photo report only
  # (docs/results/real-photos.md); not part of `make install` or `make test`.
  FILES=(demo/sample1.jpg demo/sample2.jpg demo/sample3.jpg demo/sample4.jpg demo/sample5.jpg demo/sample6.jpg LICENSE)
  PARENT="${MAGEC_CACHE:-$HOME/.cache/magec}/photos"
elif [ -z "${1:-}" ]; then
  FILES=(
    model/face_expression_model-weights_manifest.json
    model/face_expression_model.bin
    model/age_gender_model-weights_manifest.json
    model/age_gender_model.bin
    LICENSE
  )
  PARENT="${MAGEC_WEIGHTS:-$HOME/.cache/magec/weights}"
else
  echo "usage: fetch_face_api.sh [photos]" >&2
  exit 2
fi
DEST="$PARENT/face-api-$VERSION"

die() { echo "fetch_face_api: $*" >&2; exit 1; }

if [ -f "$DEST/SHA256SUMS" ] && (cd "$DEST" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1); then
  echo "fetch_face_api: $DEST is complete"
  exit 0
fi
if [ -e "$DEST" ]; then
  die "$DEST exists but is incomplete or modified; move it away and run again"
fi

command -v npm >/dev/null || die "npm is not on PATH (apt-get install npm, or get the files another way)"
command -v node >/dev/null || die "node is not on PATH"

mkdir -p "$PARENT"
WORK="$(mktemp -d "$PARENT/.face-api-fetch.XXXXXX")"
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
  || die "$TARBALL: does not hold the expected files"
STAGE="$WORK/out/package"
(cd "$STAGE" && sha256sum "${FILES[@]}" > SHA256SUMS)
chmod -R u+rwX,go+rX "$STAGE"
mv -T "$STAGE" "$DEST" || die "could not move the files into $DEST"
echo "fetch_face_api: wrote $DEST"
