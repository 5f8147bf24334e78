package docs_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// TestBundleIsThePinnedRedoc: the vendored bundle is the build of the
// Redoc version package.json pins (and package-lock.json locks), as its
// own version string says; when node_modules is installed, it is that
// package's file byte for byte (`just docs-page` copies it, `just lint`
// checks the copy is committed).
func TestBundleIsThePinnedRedoc(t *testing.T) {
	t.Parallel()
	var pkg struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	read(t, "package.json", &pkg)
	version := pkg.DevDependencies["redoc"]
	if version == "" || version[0] < '0' || version[0] > '9' {
		t.Fatalf("package.json pins redoc at %q; want an exact version", version)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	read(t, "package-lock.json", &lock)
	if got := lock.Packages["node_modules/redoc"].Version; got != version {
		t.Fatalf("package-lock.json locks redoc %q, package.json pins %q", got, version)
	}
	bundle, err := os.ReadFile("redoc.standalone.js")
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte(`" ReDoc Version: ","` + version + `"`); !bytes.Contains(bundle, want) {
		t.Fatalf("redoc.standalone.js (%d bytes) is not Redoc %s: no %s in it; run just docs-page", len(bundle), version, want)
	}
	installed, err := os.ReadFile("node_modules/redoc/bundles/redoc.standalone.js")
	if os.IsNotExist(err) {
		t.Log("node_modules not installed (npm ci --prefix internal/openapi/docs): checked the version string only")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bundle, installed) {
		t.Fatalf("redoc.standalone.js differs from node_modules/redoc/bundles/redoc.standalone.js; run just docs-page")
	}
}

func read(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
