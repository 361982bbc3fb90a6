#!/usr/bin/env bash
# Build the Traefik edge router from its Go module (no release download, no registry).
#
#   tools/traefik.sh [--help]
#
# Result: ${MOONTV_TOOLCHAIN_CACHE:-$HOME/.cache/moontv-toolchain}/traefik-<version>/traefik
# Idempotent: an existing binary of the pinned version is kept. Prints the binary path last.
# TRAEFIK_VERSION overrides the pinned version.
set -euo pipefail

# renovate: datasource=go depName=github.com/traefik/traefik/v3
VERSION="${TRAEFIK_VERSION:-v3.7.13}"
MODULE="github.com/traefik/traefik/v3"
CACHE="${MOONTV_TOOLCHAIN_CACHE:-$HOME/.cache/moontv-toolchain}"
OUT_DIR="$CACHE/traefik-$VERSION"
BIN="$OUT_DIR/traefik"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "tools/traefik.sh: unknown argument '$1' (accepted: --help)" >&2
  exit 2
fi

# The output is read whole: `| grep -q` may close the pipe before traefik has written its last
# line, and under pipefail its SIGPIPE would count as "not built" and rebuild it (minutes).
if [[ -x "$BIN" ]] && [[ "$("$BIN" version 2>/dev/null)" == *"${VERSION#v}"* ]]; then
  echo "traefik $VERSION already built"
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "tools/traefik.sh: 'go' not found on PATH" >&2; exit 1; }

echo "==> downloading $MODULE@$VERSION from the Go module proxy"
SRC_MOD="$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$SRC_MOD" ]] || { echo "tools/traefik.sh: module download failed" >&2; exit 1; }

WORK="$CACHE/work/traefik-$VERSION"
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT_DIR"
cp -r "$SRC_MOD/." "$WORK/"
chmod -R u+w "$WORK"

# go.mod replaces github.com/traefik/traefik/dynamic/ext with ./pkg/config/dynamic/ext, a nested
# module that is therefore missing from the module zip. Upstream it only holds empty extension
# points (type HTTP struct{}, type Router struct{}, type RouterIng struct{}); recreate them.
EXT="$WORK/pkg/config/dynamic/ext"
mkdir -p "$EXT"
printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >"$EXT/go.mod"
cat >"$EXT/ext.go" <<'GO'
package ext

// HTTP is a dynamic.HTTP extension.
type HTTP struct{}

// Router is a dynamic.Router extension.
type Router struct{}

// RouterIng is a RouterIng extension for ingress provider annotations.
type RouterIng struct{}

// ToRouter converts RouterIng to a Router.
func (r RouterIng) ToRouter() Router {
	return Router{}
}
GO

# A few modules Traefik depends on are not served by the Go module proxy reachable here:
#  - Traefik's fork of github.com/abbot/go-http-auth (basic/digest auth middlewares): use the
#    upstream module plus the two functions Traefik calls that it lacks (below).
#  - the SDKs of some ACME DNS-01 providers in lego: build lego without those providers (the
#    edge here terminates plain HTTP; certificates are not obtained through those DNS APIs).
DROPPED_DNS_PROVIDERS="alidns aliesa azion dnsimple edgedns edgeone huaweicloud oraclecloud
  regfish sakuracloud tencentcloud ucloud yandexcloud"
LEGO_VERSION="$(sed -n 's/^[[:space:]]*github.com\/go-acme\/lego\/v5 \(v[^ ]*\).*/\1/p' "$WORK/go.mod")"
LEGO_MOD="$(go mod download -json "github.com/go-acme/lego/v5@$LEGO_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
mkdir -p "$WORK/_deps/lego"
cp -r "$LEGO_MOD/." "$WORK/_deps/lego/"
chmod -R u+w "$WORK/_deps/lego"
python3 - "$WORK/_deps/lego/providers/dns" $DROPPED_DNS_PROVIDERS <<'PY2'
import pathlib, re, shutil, sys
root, dropped = pathlib.Path(sys.argv[1]), sys.argv[2:]
gen = root / "zz_gen_dns_providers.go"
text = gen.read_text()
for name in dropped:
    shutil.rmtree(root / name)
    text, n_imp = re.subn(rf'\n\t"github.com/go-acme/lego/v5/providers/dns/{name}"', "", text)
    text, n_case = re.subn(rf'\n\tcase [^\n]*:\n\t\treturn {name}\.NewDNSProvider\(\)', "", text)
    if (n_imp, n_case) != (1, 1):
        sys.exit(f"tools/traefik.sh: cannot drop DNS provider {name} from lego")
gen.write_text(text)
PY2
# Upstream go-http-auth v0.4.0 lacks two additions of Traefik's fork: CheckSecret (also in
# upstream's later commits) and DigestAuth.RequireAuthStale. Add them in a small file.
# renovate: datasource=go depName=github.com/abbot/go-http-auth
AUTH_MOD="$(go mod download -json github.com/abbot/go-http-auth@v0.4.0 \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
mkdir -p "$WORK/_deps/go-http-auth"
cp -r "$AUTH_MOD/." "$WORK/_deps/go-http-auth/"
chmod -R u+w "$WORK/_deps/go-http-auth"
printf 'module github.com/abbot/go-http-auth\n\ngo 1.13\n' \
  >"$WORK/_deps/go-http-auth/go.mod"
cat >"$WORK/_deps/go-http-auth/traefik_compat.go" <<'GO'
package auth

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// CheckSecret reports whether password matches secret, an htpasswd entry (bcrypt, SHA, MD5).
func CheckSecret(password, secret string) bool {
	compare := compareFuncs[0].compare
	for _, cmp := range compareFuncs[1:] {
		if strings.HasPrefix(secret, cmp.prefix) {
			compare = cmp.compare
			break
		}
	}
	return compare([]byte(secret), []byte(password)) == nil
}

// RequireAuthStale is RequireAuth with stale=TRUE: the nonce expired, the credentials did not.
func (a *DigestAuth) RequireAuthStale(w http.ResponseWriter, r *http.Request) {
	if len(a.clients) > a.ClientCacheSize+a.ClientCacheTolerance {
		a.Purge(a.ClientCacheTolerance * 2)
	}
	nonce := RandomKey()
	a.clients[nonce] = &digest_client{nc: 0, last_seen: time.Now().UnixNano()}
	w.Header().Set(contentType, a.Headers.V().UnauthContentType)
	w.Header().Set(a.Headers.V().Authenticate,
		fmt.Sprintf(`Digest realm="%s", nonce="%s", opaque="%s", algorithm="MD5", qop="auth", stale=TRUE`,
			a.Realm, nonce, a.Opaque))
	w.WriteHeader(a.Headers.V().UnauthCode)
	_, _ = w.Write([]byte(a.Headers.V().UnauthResponse))
}
GO
(cd "$WORK" && go mod edit \
  -replace "github.com/go-acme/lego/v5=./_deps/lego" \
  -replace "github.com/abbot/go-http-auth=./_deps/go-http-auth")

echo "==> building traefik $VERSION (nice -n 10; several minutes on a busy machine)"
cd "$WORK"
CGO_ENABLED=0 nice -n 10 go build -mod=mod -trimpath -buildvcs=false \
  -ldflags "-s -w -X $MODULE/pkg/version.Version=$VERSION -X $MODULE/pkg/version.Codename=moontv" \
  -o "$BIN.tmp" ./cmd/traefik
mv "$BIN.tmp" "$BIN"
rm -rf "$WORK"
"$BIN" version
echo "$BIN"
