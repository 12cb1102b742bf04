package couponmesh_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLayout keeps the package rules of STYLE.md true: what stays free of
// what, and who must use the one definition of protocol v1.
func TestLayout(t *testing.T) {
	const mod = "github.com/couponmesh/couponmesh"
	rules := []struct {
		pkgs      string
		forbidden []string
	}{
		{mod, []string{mod + "/", "github.com/", "go.mongodb.org/", "google.golang.org/"}},
		{mod + "/actors/...", []string{mod + "/transport", mod + "/persistence", mod + "/cluster"}},
		{mod + "/transport/...", []string{"github.com/asynkron/", mod + "/persistence", mod + "/actors", mod + "/cluster", "go.mongodb.org/"}},
		// The admin API and console see the node through the domain's
		// interfaces (couponmesh.Inspector, Sessions) only.
		{mod + "/transport/admin/...", []string{"github.com/asynkron/", mod + "/persistence", mod + "/actors", mod + "/cluster", "go.mongodb.org/"}},
		{mod + "/persistence/...", []string{"github.com/asynkron/", mod + "/transport", mod + "/actors", mod + "/cluster"}},
		{mod + "/cluster/...", []string{mod + "/transport", mod + "/persistence", mod + "/actors"}},
		{mod + "/client/...", []string{"github.com/asynkron/", mod + "/persistence", mod + "/actors", mod + "/cluster", mod + "/transport/ws"}},
		// Protocol v1 is the domain's values in frames: stdlib and the domain
		// only (the domain package itself is allowed in every rule).
		{mod + "/protocol/...", []string{mod + "/", "github.com/", "go.mongodb.org/", "google.golang.org/"}},
		// The bench speaks to the nodes as clients and operators do (client/,
		// the admin API over HTTP), never through the server's own packages.
		{mod + "/bench/...", []string{mod + "/transport/ws", mod + "/transport/httpapi", mod + "/cmd"}},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Deps " "}}`, r.pkgs).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", r.pkgs, err, out)
		}
		if strings.Contains(string(out), "matched no packages") {
			t.Fatalf("go list %s: %s", r.pkgs, out) // a rule about nothing keeps nothing true
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			pkg, deps, _ := strings.Cut(line, ": ")
			for _, dep := range strings.Fields(deps) {
				for _, f := range r.forbidden {
					if strings.HasPrefix(dep, f) && dep != pkg && dep != mod {
						t.Errorf("%s imports %s (forbidden: %s)", pkg, dep, f)
					}
				}
			}
		}
	}

	// The server and the Go SDK speak protocol v1 through the one package
	// that defines it, not through frame types of their own.
	for _, pkg := range []string{mod + "/transport/ws", mod + "/client"} {
		out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		if !slices.Contains(strings.Fields(string(out)), mod+"/protocol") {
			t.Errorf("%s does not import %s/protocol", pkg, mod)
		}
	}
}

// TestLayoutTestHelpers: the binary reaches the test helpers (testing,
// cluster/clustertest, internal/netlab, internal/benchutil,
// internal/history, internal/testutil) only through bench, which runs the same processes as
// the cluster tests: no other package cmd/couponmesh links imports one.
func TestLayoutTestHelpers(t *testing.T) {
	const mod = "github.com/couponmesh/couponmesh"
	helpers := map[string]bool{
		"testing": true, mod + "/cluster/clustertest": true, mod + "/internal/netlab": true,
		mod + "/internal/benchutil": true, mod + "/internal/history": true, mod + "/internal/testutil": true,
	}
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, mod+"/cmd/couponmesh").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		if pkg == mod+"/bench" || helpers[pkg] {
			continue
		}
		for _, imp := range strings.Fields(imports) {
			if helpers[imp] {
				t.Errorf("%s imports the test helper %s: only bench may (the bench subcommand)", pkg, imp)
			}
		}
	}
}
