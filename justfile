# berth's developer commands. `just` lists them; CI (.ci/run) runs
# `just lint` and `just test`.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Go-installed tools (buf, protoc-gen-go, protoc-gen-connect-go, staticcheck)
# live in GOPATH/bin, which is not always on PATH.
export PATH := `go env GOPATH` + "/bin:" + env("PATH")

# The protovalidate rules file comes from this Go module (the buf registry is
# not reachable from CI). A version in go.mod wins over this one.
protovalidate_module := "github.com/bufbuild/protovalidate"
protovalidate_version := "v1.2.2"

# List the recipes.
default:
    @{{ just_executable() }} --list --justfile {{ justfile() }}

# Run the server from source; arguments go to `berth serve` (just run --log-format text).
[positional-arguments]
run *args:
    #!/usr/bin/env bash
    set -euo pipefail
    # The first build compiles every dependency (a minute or two); say so
    # rather than sit silent.
    echo "just run: building berth (the first build takes a minute or two; later ones seconds)…" >&2
    mkdir -p bin
    start=$SECONDS
    go build -o bin/berth-dev ./cmd/berth
    echo "just run: built in $((SECONDS - start)) s; starting berth serve $*" >&2
    exec bin/berth-dev serve "$@"

# Build the web console (web/src) into web/dist, which is committed and
# embedded into berth by the package in web/: `go build`, `just run`, `just
# build` and the Dockerfile take the committed build and need no node.
web:
    test -d web/node_modules || npm ci --prefix web --no-audit --no-fund
    npm run build --prefix web

# Fail when the committed console build differs from what `just web` makes
# from web/src (the build is reproducible: content-hashed names, no dates).
check-web: web
    @echo '--- web/dist matches web/src'
    git diff --exit-code -- web/dist
    @untracked="$(git ls-files --others --exclude-standard -- web/dist)"; \
        test -z "$untracked" || { printf 'console build files not committed:\n%s\n' "$untracked"; exit 1; }

# Run the console's browser tests (Chromium against a real berth; also part
# of `just test`), printing the JavaScript size and first-load time.
test-web:
    test -d web/node_modules || npm ci --prefix web --no-audit --no-fund
    go test -count=1 -run TestConsoleInBrowser -v ./web

# Run the browser tests and write their screenshots to docs/screenshots.
screenshots:
    test -d web/node_modules || npm ci --prefix web --no-audit --no-fund
    UPDATE_SCREENSHOTS=1 go test -count=1 -run TestConsoleInBrowser -v ./web

# Serve web/src with Vite on 127.0.0.1:5173 (reloads on save), sending API
# calls to a berth on 127.0.0.1:8080 (just run --secure-cookies=false).
web-dev:
    test -d web/node_modules || npm ci --prefix web --no-audit --no-fund
    npm run dev --prefix web

# Build a static binary into bin/berth, stamped with `git describe`.
build:
    #!/usr/bin/env bash
    set -euo pipefail
    version="$(git describe --always --dirty 2>/dev/null || echo dev)"
    CGO_ENABLED=0 go build -trimpath \
        -ldflags "-X github.com/berthhq/berth/internal/version.Version=${version}" \
        -o bin/berth ./cmd/berth
    echo "bin/berth ${version}"

# Run every test with the race detector (which needs cgo and a C compiler).
test:
    go test -race -count=1 -timeout 15m ./...

# go test -fuzz takes one target per run. A crash is saved under the
# package's testdata/fuzz/<target>/: commit it with the fix, as a seed.
# Run each fuzz target for fuzztime (just fuzz 2m); `just test` replays their seeds.
fuzz fuzztime="20s":
    go test -run '^$' -fuzz '^FuzzAPI$' -fuzztime {{ fuzztime }} ./internal/server
    go test -run '^$' -fuzz '^FuzzArgv$' -fuzztime {{ fuzztime }} ./internal/gitop
    go test -run '^$' -fuzz '^FuzzReturnPath$' -fuzztime {{ fuzztime }} ./internal/oidc
    go test -run '^$' -fuzz '^FuzzSeq$' -fuzztime {{ fuzztime }} ./internal/sse
    go test -run '^$' -fuzz '^FuzzFrame$' -fuzztime {{ fuzztime }} ./internal/ws
    go test -run '^$' -fuzz '^FuzzResolve$' -fuzztime {{ fuzztime }} ./internal/workspace
    go test -run '^$' -fuzz '^FuzzEnvRule$' -fuzztime {{ fuzztime }} ./internal/taskenv
    go test -run '^$' -fuzz '^FuzzParser$' -fuzztime {{ fuzztime }} ./internal/agent
    go test -run '^$' -fuzz '^FuzzDecodeFlat$' -fuzztime {{ fuzztime }} ./internal/server
    go test -run '^$' -fuzz '^FuzzJSONHandler$' -fuzztime {{ fuzztime }} ./internal/telemetry

# Measure berth side by side with its floors in one run, on 127.0.0.1 (issue
# #18): GetWorkspace throughput (closed loop) and latency at fixed rates
# (vegeta, open loop) against a bare net/http server; RSS per idle SSE,
# WebSocket and Connect (h2c) stream following a running task against bare
# go-sse, coder/websocket and HTTP/2 servers; SSE fan-out deliveries, loss
# and latency; Postgres and SQLite log ingest (go test -bench). Prints a
# table (target, met or not) and writes JSON (default /tmp/berth-bench.json);
# about five minutes with the defaults. Flags go to the harness, e.g.
# just bench -streams 5000 -phases unary,streams -readme README.md
# (-help lists them).
[positional-arguments]
bench *args:
    go run ./tools/bench "$@"

# Run the Go benchmarks (go test -bench), and no tests.
bench-go:
    go test -run '^$' -bench . -benchmem ./...

# gofmt, go vet, staticcheck, buf lint, buf format, gosec, the README flag-table
# check, the generated-code check, Redocly's lint of the OpenAPI document, the
# vendored /docs bundle check and the console build check. check-flagtable
# comes before check-generated, whose `just generate` rewrites the table.
lint: _protovalidate check-flagtable check-generated lint-openapi check-docs-page check-web
    @echo '--- gofmt'
    @test -z "$(gofmt -l .)" || { echo 'gofmt -l: these files need `gofmt -w`:'; gofmt -l .; exit 1; }
    @echo '--- go vet'
    go vet ./...
    @echo '--- staticcheck'
    @# Every check, on every package but internal/gen: that code is generated
    @# (drift-checked above, never edited) and its generators write no package
    @# comment (ST1000). A single finding elsewhere is silenced with
    @# //lint:ignore and its reason on the same line.
    staticcheck -checks all $(go list ./... | grep -v '/internal/gen/')
    @echo '--- buf lint'
    buf lint
    @echo '--- buf format'
    buf format -d --exit-code
    @echo '--- gosec'
    gosec -quiet -exclude-dir internal/gen -exclude-generated ./...

# Regenerate internal/gen (Go), web/src/gen (TypeScript) and the OpenAPI
# document in internal/openapi/spec from proto/ (berth's API and its copy of
# the gRPC health protocol), and the README's flag table.
generate: _protovalidate flagtable
    test -d web/node_modules || npm ci --prefix web --no-audit --no-fund
    buf generate --path proto/berth --path proto/grpc

# Rewrite the README's configuration table (between <!-- flags:begin --> and
# <!-- flags:end -->) from the flags of `berth serve`.
flagtable:
    go run ./internal/config/cmd/flagtable README.md

# Fail when the README's configuration table differs from the flags of `berth serve`.
check-flagtable:
    @echo '--- README flag table matches the flags'
    go run ./internal/config/cmd/flagtable -check README.md

# Fail when the committed generated code differs from what `just generate` writes.
check-generated: generate
    @echo '--- generated code matches proto/'
    git diff --exit-code -- internal/gen web/src/gen internal/openapi/spec
    @untracked="$(git ls-files --others --exclude-standard -- internal/gen web/src/gen internal/openapi/spec)"; \
        test -z "$untracked" || { printf 'generated files not committed:\n%s\n' "$untracked"; exit 1; }

# Lint the generated OpenAPI document with Redocly (tools/openapi: its
# version pinned in package-lock.json, its rules in redocly.yaml). No
# telemetry, no update check: lint talks to no one.
lint-openapi:
    test -d tools/openapi/node_modules || npm ci --prefix tools/openapi --no-audit --no-fund
    @echo '--- redocly lint'
    REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
        tools/openapi/node_modules/.bin/redocly lint --config tools/openapi/redocly.yaml \
        internal/openapi/spec/openapi.yaml internal/openapi/spec/openapi.json

# Copy Redoc's standalone bundle and its licence notice out of the npm
# package pinned in internal/openapi/docs/package.json into that Go package,
# which embeds them for /docs (npm ci first when node_modules is missing or
# holds another version).
docs-page:
    #!/usr/bin/env bash
    set -euo pipefail
    dir=internal/openapi/docs
    pinned="$(node -p "require('./$dir/package.json').devDependencies.redoc")"
    installed="$(node -p "try { require('./$dir/node_modules/redoc/package.json').version } catch { '' }")"
    if [[ "$installed" != "$pinned" ]]; then
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    fi
    cp "$dir/node_modules/redoc/bundles/redoc.standalone.js" "$dir/node_modules/redoc/bundles/redoc.standalone.js.LICENSE.txt" "$dir/"
    echo "redoc $pinned: $(wc -c < "$dir/redoc.standalone.js") bytes in $dir/redoc.standalone.js"

# Fail when the committed Redoc bundle is not the pinned npm package's.
check-docs-page: docs-page
    @echo '--- the docs page bundle matches its pinned npm package'
    git diff --exit-code -- internal/openapi/docs/redoc.standalone.js internal/openapi/docs/redoc.standalone.js.LICENSE.txt
    @untracked="$(git ls-files --others --exclude-standard -- internal/openapi/docs/redoc.standalone.js internal/openapi/docs/redoc.standalone.js.LICENSE.txt)"; \
        test -z "$untracked" || { printf 'vendored files not committed:\n%s\n' "$untracked"; exit 1; }

# Copy buf/validate/validate.proto out of the Go module cache into build/protovalidate.
_protovalidate:
    #!/usr/bin/env bash
    set -euo pipefail
    module="{{ protovalidate_module }}"
    version="$(awk -v m="$module" '$1 == m { print $2 } $1 == "require" && $2 == m { print $3 }' go.mod)"
    version="${version:-{{ protovalidate_version }}}"
    # Downloads the module when it is not in the cache; .Dir is where it is.
    dir="$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    test -n "$dir" || { echo "go mod download: no directory for $module@$version" >&2; exit 1; }
    # Files in the module cache are read-only; install gives the copy u+w.
    install -D -m 0644 "$dir/proto/protovalidate/buf/validate/validate.proto" \
        build/protovalidate/buf/validate/validate.proto
