package main

import (
	"bytes"
	"encoding"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
	"gopkg.in/yaml.v3"
)

// configKey is one key of the node configuration: its YAML path
// (section.key), its environment variable, and where it lands in Config.
type configKey struct {
	path  string
	env   string
	index []int
	typ   reflect.Type
}

// configKeys walks Config as the YAML decoder and env do: sections, and
// the parts' configs embedded inline (their own tags are the keys).
func configKeys() []configKey {
	var out []configKey
	var walk func(t reflect.Type, path, envPrefix string, index []int)
	walk = func(t reflect.Type, path, envPrefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			idx := append(append([]int{}, index...), i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if opts == "inline" {
				walk(f.Type, path, envPrefix+f.Tag.Get("envPrefix"), idx)
				continue
			}
			if p, ok := f.Tag.Lookup("envPrefix"); ok && f.Type.Kind() == reflect.Struct {
				walk(f.Type, path+name+".", envPrefix+p, idx)
				continue
			}
			out = append(out, configKey{path: path + name, env: envPrefix + f.Tag.Get("env"), index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeOf(Config{}), "", "COUPONMESH_", nil)
	return out
}

// Every YAML key is also the environment variable COUPONMESH_<KEY> (the
// section, an underscore and the key, in capitals), as configs/node.yaml
// and docs/OPERATIONS.md say: a part's tags cannot drift apart.
func TestConfigKeysAreTheirEnvironmentNames(t *testing.T) {
	keys := configKeys()
	if len(keys) < 80 {
		t.Fatalf("only %d keys found: the walk misses sections", len(keys))
	}
	envs := configEnvKeys()
	for _, k := range keys {
		want := "COUPONMESH_" + strings.ToUpper(strings.ReplaceAll(k.path, ".", "_"))
		if k.env != want {
			t.Errorf("%s is read from %s, want %s", k.path, k.env, want)
		}
		if !envs[k.env] {
			t.Errorf("%s: %s is not among the variables the k8s checks know", k.path, k.env)
		}
	}
}

// Every key the docs' configuration tables name (docs/OPERATIONS.md: the
// tables whose first column is "key") is still read from the YAML file and
// from its environment variable, into the same field.
func TestDocumentedConfigKeysMap(t *testing.T) {
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]configKey{}
	for _, k := range configKeys() {
		byPath[k.path] = k
	}
	tick := regexp.MustCompile("`([a-z_.*]+)`")
	var documented []string
	inTable := false
	for _, l := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(l, "| key |"):
			inTable = true
		case !strings.HasPrefix(l, "|"):
			inTable = false
		case inTable && !strings.HasPrefix(l, "| ---"):
			first, _, _ := strings.Cut(strings.TrimPrefix(l, "|"), "|")
			for _, m := range tick.FindAllStringSubmatch(first, -1) {
				documented = append(documented, m[1])
			}
		}
	}
	if len(documented) < 10 {
		t.Fatalf("found %d documented keys (%v): the tables moved?", len(documented), documented)
	}
	for _, path := range documented {
		k, ok := byPath[path]
		if !ok {
			t.Errorf("docs/OPERATIONS.md documents %s, which Config does not read", path)
			continue
		}
		text, yamlValue := sampleValue(t, k.typ)
		// From the file.
		section, key, nested := strings.Cut(path, ".")
		var doc string
		if nested {
			doc = section + ":\n  " + key + ": " + yamlValue + "\n"
		} else {
			doc = path + ": " + yamlValue + "\n"
		}
		var fromFile Config
		dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
		dec.KnownFields(true)
		if err := dec.Decode(&fromFile); err != nil {
			t.Errorf("%s in YAML: %v", path, err)
			continue
		}
		// From the environment.
		var fromEnv Config
		if err := env.ParseWithOptions(&fromEnv, env.Options{Prefix: "COUPONMESH_", Environment: map[string]string{k.env: text}}); err != nil {
			t.Errorf("%s=%s: %v", k.env, text, err)
			continue
		}
		got, want := reflect.ValueOf(fromFile).FieldByIndex(k.index), reflect.ValueOf(fromEnv).FieldByIndex(k.index)
		if got.IsZero() || !reflect.DeepEqual(got.Interface(), want.Interface()) {
			t.Errorf("%s: the file sets %v, %s sets %v", path, got, k.env, want)
		}
	}
}

// sampleValue returns a value of type t as an environment variable and as
// YAML.
func sampleValue(t *testing.T, typ reflect.Type) (text, yamlValue string) {
	if typ.Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) || reflect.PointerTo(typ).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) ||
		typ == reflect.TypeFor[time.Duration]() {
		return "7s", `"7s"`
	}
	switch typ.Kind() {
	case reflect.String:
		return "sample", `"sample"`
	case reflect.Bool:
		return "true", "true"
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Float64:
		return "7", "7"
	case reflect.Slice:
		return "a,b", "[a, b]"
	}
	t.Fatalf("no sample for %s", typ)
	return "", ""
}
