// Package protocoltest gives tests the golden frames of protocol v1
// (protocol/testdata): one file per request op, reply, push kind and error
// code, each one frame as the encoders of package protocol write it,
// followed by a newline. The tests of the server, the Go SDK and the JS SDK
// decode and produce them, so none can rename a field alone.
package protocoltest

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// The kinds of golden frames: the folders of testdata/. A request or reply
// is named by its op, a push by its kind, an error by its code.
const (
	Requests = "requests"
	Replies  = "replies"
	Pushes   = "pushes"
	Errors   = "errors"
)

// Dir returns the folder of the golden frames.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// Frame returns the golden frame kind/name without its newline; t fails if
// there is none.
func Frame(t testing.TB, kind, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(), kind, name+".json"))
	if err != nil {
		t.Fatalf("golden frame %s/%s: %v", kind, name, err)
	}
	return bytes.TrimSuffix(b, []byte("\n"))
}

// Names lists the golden frames of kind, sorted.
func Names(t testing.TB, kind string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(Dir(), kind, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden frames of kind %s in %s (%v)", kind, Dir(), err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = strings.TrimSuffix(filepath.Base(p), ".json")
	}
	sort.Strings(names)
	return names
}
