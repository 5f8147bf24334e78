// Package web holds berth's web console: the TypeScript sources in src/
// (Preact and Connect-Web over the clients generated into src/gen), and
// their build in dist/, which this package embeds so that the berth binary
// serves the console with no files beside it and no node on the machine.
//
// dist/ is committed. `npm run build --prefix web` (or `just web`) remakes
// it from the sources; the build is reproducible (content-hashed names, no
// timestamps) and `just lint` fails when the committed build differs from
// a fresh one. go:embed cannot reach parent folders, so the embedding
// lives here, beside the build.
package web

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Dist is the console build: index.html at its root and content-hashed
// assets under assets/.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // "dist" is a valid path: fs.Sub cannot fail on it
	}
	return sub
}
