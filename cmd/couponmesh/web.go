package main

import "io/fs"

// webFS returns the web client's files, or nil for the placeholder page.
func webFS() fs.FS { return nil }
