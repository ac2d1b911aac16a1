#!/usr/bin/env bash
# Re-fetch the web dashboard's JavaScript libraries from the npm registry into
# web/static/web/vendor/, with their licences. Versions are pinned here; change one, run this,
# look at the page (and the browser tests), commit the result. Needs `npm` (Debian's `npm`).
# Nothing is fetched at run time: the page loads only these vendored files (no CDN).
set -euo pipefail
cd "$(dirname "$0")/.."

LIGHTWEIGHT_CHARTS_VERSION=5.2.1  # Apache-2.0, TradingView
MSGPACK_VERSION=3.1.3             # ISC, @msgpack/msgpack

dest=web/static/web/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch PACKAGE@VERSION: npm pack (integrity checked by npm) and unpack into $work/NAME
  local spec=$1 name=$2
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  mkdir -p "$work/$name"
  tar -xzf "$work"/*"$name"*.tgz -C "$work/$name" --strip-components=1
}

fetch "lightweight-charts@$LIGHTWEIGHT_CHARTS_VERSION" lightweight-charts
fetch "@msgpack/msgpack@$MSGPACK_VERSION" msgpack

rm -rf "$dest"
mkdir -p "$dest/lightweight-charts" "$dest/msgpack"

# The standalone production build defines window.LightweightCharts.
cp "$work/lightweight-charts/dist/lightweight-charts.standalone.production.js" \
  "$work/lightweight-charts/LICENSE" "$dest/lightweight-charts/"
# The npm package does not ship the project's NOTICE file; its text (the attribution the
# licence asks for, from the project's repository) is reproduced here.
cat > "$dest/lightweight-charts/NOTICE" <<'EOF'
TradingView Lightweight Charts
Copyright (c) 2023 TradingView, Inc. https://www.tradingview.com/
EOF

# The UMD build defines window.MessagePack.
cp "$work/msgpack/dist.umd/msgpack.min.js" "$work/msgpack/dist.umd/msgpack.min.js.map" \
  "$work/msgpack/LICENSE" "$dest/msgpack/"

cat > "$dest/VERSIONS" <<EOF
lightweight-charts $LIGHTWEIGHT_CHARTS_VERSION (Apache-2.0) lightweight-charts/
@msgpack/msgpack $MSGPACK_VERSION (ISC) msgpack/
Fetched from the npm registry by scripts/vendor-js.sh.
EOF
(cd "$dest" && find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS)
echo "vendored into $dest:"
cat "$dest/VERSIONS"
