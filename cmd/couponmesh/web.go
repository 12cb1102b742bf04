package main

import (
	"io/fs"

	"github.com/couponmesh/couponmesh/webclient"
)

// webFS returns the built web client (webclient/dist, embedded).
func webFS() fs.FS { return webclient.FS() }
