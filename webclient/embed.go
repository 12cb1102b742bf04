// Package webclient embeds the built browser app (dist/, produced by
// `npm run build` in this directory and committed, so `go build` needs no
// npm): index.html, content-hashed files under assets/, and the service
// worker and web app manifest at fixed root URLs.
package webclient

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// FS returns the built app with index.html at its root.
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // cannot happen: "dist" is a valid path
	}
	return sub
}
