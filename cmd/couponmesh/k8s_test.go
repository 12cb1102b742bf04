package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The Kubernetes manifests in configs/kubernetes are checked offline (no
// cluster, no schema download): every document decodes strictly into the
// k8s.io/api type of its kind (an unknown or misspelt field is an error),
// and what couponmesh needs of them holds.

const k8sDir = "../../configs/kubernetes"

// k8sObjects is every object of the manifests, by kind.
type k8sObjects struct {
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	pdbs         []*policyv1.PodDisruptionBudget
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	policies     []*networkingv1.NetworkPolicy
}

func loadK8s(t *testing.T) k8sObjects {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", k8sDir, err)
	}
	var o k8sObjects
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 StatefulSet":
				v := &appsv1.StatefulSet{}
				o.statefulSets, obj = append(o.statefulSets, v), v
			case "v1 Service":
				v := &corev1.Service{}
				o.services, obj = append(o.services, v), v
			case "v1 ConfigMap":
				v := &corev1.ConfigMap{}
				o.configMaps, obj = append(o.configMaps, v), v
			case "v1 Secret":
				v := &corev1.Secret{}
				o.secrets, obj = append(o.secrets, v), v
			case "policy/v1 PodDisruptionBudget":
				v := &policyv1.PodDisruptionBudget{}
				o.pdbs, obj = append(o.pdbs, v), v
			case "autoscaling/v2 HorizontalPodAutoscaler":
				v := &autoscalingv2.HorizontalPodAutoscaler{}
				o.hpas, obj = append(o.hpas, v), v
			case "networking.k8s.io/v1 NetworkPolicy":
				v := &networkingv1.NetworkPolicy{}
				o.policies, obj = append(o.policies, v), v
			default:
				t.Fatalf("%s #%d: unexpected %s %s (add it to the test)", f, i, tm.APIVersion, tm.Kind)
			}
			if err := strictDecode([]byte(doc), obj); err != nil {
				t.Errorf("%s #%d (%s): %v", filepath.Base(f), i, tm.Kind, err)
			}
		}
	}
	return o
}

// strictDecode decodes a YAML document as the API server does with
// fieldValidation=Strict: field names are case-sensitive, and unknown or
// duplicate fields are errors (encoding/json, and so sigs.k8s.io/yaml's
// UnmarshalStrict, would take "clusterIp" for "clusterIP").
func strictDecode(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func stripComments(doc string) string {
	var out []string
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// configEnvKeys returns every environment variable couponmesh's Config
// reads (COUPONMESH_<KEY>, with the envPrefix of nested structs).
func configEnvKeys() map[string]bool {
	keys := map[string]bool{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			if p, ok := f.Tag.Lookup("envPrefix"); ok && f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+p)
				continue
			}
			if e := f.Tag.Get("env"); e != "" {
				keys[prefix+e] = true
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "COUPONMESH_")
	return keys
}

// The strict decoding refuses misspelt, unknown and duplicate fields: the
// check bites.
func TestK8sStrictDecodingRefusesUnknownFields(t *testing.T) {
	for name, spec := range map[string]string{
		"case":      "clusterIp: None",
		"unknown":   "publishNotReady: true",
		"duplicate": "type: ClusterIP\n  type: ClusterIP",
		"type":      "ports: 80",
	} {
		doc := "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  " + spec + "\n"
		if err := strictDecode([]byte(doc), &corev1.Service{}); err == nil {
			t.Errorf("%s: %q decoded", name, spec)
		}
	}
	if err := strictDecode([]byte("apiVersion: v1\nkind: Service\nspec:\n  clusterIP: None\n"), &corev1.Service{}); err != nil {
		t.Errorf("a valid Service: %v", err)
	}
}

func TestK8sManifests(t *testing.T) {
	o := loadK8s(t)
	if len(o.statefulSets) != 1 || len(o.configMaps) != 1 || len(o.secrets) == 0 || len(o.pdbs) != 1 || len(o.hpas) != 1 {
		t.Fatalf("want one StatefulSet, ConfigMap, PodDisruptionBudget and HorizontalPodAutoscaler, and Secrets; have %d %d %d %d %d",
			len(o.statefulSets), len(o.configMaps), len(o.pdbs), len(o.hpas), len(o.secrets))
	}
	ss, cm := o.statefulSets[0], o.configMaps[0]
	secrets := map[string]*corev1.Secret{}
	for _, s := range o.secrets {
		secrets[s.Name] = s
	}
	pod := ss.Spec.Template
	podLabels := labels.Set(pod.Labels)

	// Selectors match the pods.
	sel, err := metav1.LabelSelectorAsSelector(ss.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Errorf("StatefulSet selector %v does not match its pod labels %v (%v)", ss.Spec.Selector, pod.Labels, err)
	}
	for _, p := range o.pdbs {
		if s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector); err != nil || s.Empty() || !s.Matches(podLabels) {
			t.Errorf("PodDisruptionBudget %s selects %v, not the pods (%v)", p.Name, p.Spec.Selector, err)
		}
		if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 {
			t.Errorf("PodDisruptionBudget %s: maxUnavailable %v, want 1 (one node drains at a time)", p.Name, p.Spec.MaxUnavailable)
		}
	}
	for _, np := range o.policies {
		if s, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err != nil || !s.Matches(podLabels) {
			t.Errorf("NetworkPolicy %s does not select the pods", np.Name)
		}
	}

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}
	portOf := func(p intstr.IntOrString) (int32, bool) {
		if p.Type == intstr.String {
			cp, ok := ports[p.StrVal]
			return cp.ContainerPort, ok
		}
		for _, cp := range ports {
			if cp.ContainerPort == p.IntVal {
				return cp.ContainerPort, true
			}
		}
		return 0, false
	}

	// Services select the pods and target ports the container has; the
	// headless one is the StatefulSet's and lists pods before they are
	// ready (seeds must resolve for a node to become ready).
	var headless *corev1.Service
	for _, s := range o.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s selects %v, not the pods", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if _, ok := portOf(p.TargetPort); !ok {
				t.Errorf("Service %s port %s targets %v, which the container does not expose", s.Name, p.Name, p.TargetPort.String())
			}
		}
		if s.Name == ss.Spec.ServiceName {
			headless = s
		}
	}
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("StatefulSet serviceName %q: want a headless Service (clusterIP None) with publishNotReadyAddresses", ss.Spec.ServiceName)
	}

	// The environment the node gets: ConfigMap, then env (with $(VAR)
	// references and the downward API resolved as a pod would).
	cfgKeys := configEnvKeys()
	known := map[string]bool{"POD_IP": true, "GOMEMLIMIT": true}
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil || ef.ConfigMapRef.Name != cm.Name {
			t.Errorf("envFrom %+v: want the ConfigMap %s", ef, cm.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	secretKeys := map[string]map[string]bool{} // secret → its keys
	for _, sec := range o.secrets {
		secretKeys[sec.Name] = map[string]bool{}
		for k := range sec.StringData {
			secretKeys[sec.Name][k] = true
			if _, ok := sec.Data[k]; ok {
				t.Errorf("Secret %s: key %s in data and stringData", sec.Name, k)
			}
		}
		for k := range sec.Data {
			secretKeys[sec.Name][k] = true
		}
	}
	// Secret volumes name Secrets of the manifests.
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && secrets[v.Secret.SecretName] == nil {
			t.Errorf("volume %s: Secret %s is not in the manifests", v.Name, v.Secret.SecretName)
		}
	}
	sample := map[string]string{"status.podIP": "10.1.2.3", "metadata.name": "couponmesh-0"}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = regexp.MustCompile(`\$\(([A-Z_]+)\)`).ReplaceAllStringFunc(e.Value, func(m string) string { return env[m[2:len(m)-1]] })
		case e.ValueFrom.FieldRef != nil:
			v, ok := sample[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Errorf("env %s: unexpected fieldRef %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if !secretKeys[ref.Name][ref.Key] {
				t.Errorf("env %s: secret %s key %s does not exist", e.Name, ref.Name, ref.Key)
				continue
			}
			env[e.Name] = secrets[ref.Name].StringData[ref.Key]
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = "2147483648"
		}
	}
	for k := range env {
		if !cfgKeys[k] && !known[k] {
			t.Errorf("environment variable %s is not a couponmesh config key", k)
		}
	}
	for _, k := range []string{"COUPONMESH_JWT_SECRET", "COUPONMESH_CLUSTER_GOSSIP_KEY", "COUPONMESH_MONGO_URI"} {
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == k && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		}) {
			t.Errorf("%s must come from the Secret", k)
		}
		if _, inCM := cm.Data[k]; inCM {
			t.Errorf("%s is in the ConfigMap: secrets belong in the Secret", k)
		}
	}
	// ... and it is a configuration the node accepts.
	cfg, err := LoadConfig("", env)
	if err != nil {
		t.Fatalf("the manifests' environment does not load: %v", err)
	}
	if cfg.Dev {
		t.Error("dev mode (dev login for anyone) is on")
	}
	if !strings.Contains(cfg.MongoURI, "replicaSet=") || !strings.Contains(cfg.MongoURI, "w=majority") {
		t.Errorf("mongo_uri %q: want a replica set with w=majority", cfg.MongoURI)
	}
	if len(cfg.Seeds) == 0 {
		t.Error("no seeds")
	}
	for _, s := range cfg.Seeds {
		host, _, err := net.SplitHostPort(s)
		if err != nil || !strings.HasSuffix(host, "."+headless.Name) {
			t.Errorf("seed %q: want <pod>.%s:port", s, headless.Name)
		}
	}
	httpPort := func(addr string) int32 {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return int32(n)
	}
	for name, addr := range map[string]string{"http": cfg.HTTPAddr, "admin": cfg.AdminAddr, "gossip": cfg.ClusterAddr, "remote": cfg.RemoteAddr} {
		if ports[name].ContainerPort != httpPort(addr) {
			t.Errorf("container port %s is %d, the node listens on %s", name, ports[name].ContainerPort, addr)
		}
	}
	if ports["gossip-udp"].ContainerPort != httpPort(cfg.ClusterAddr) || ports["gossip-udp"].Protocol != corev1.ProtocolUDP {
		t.Errorf("memberlist needs UDP on %s too", cfg.ClusterAddr)
	}

	// Probes: readiness on /readyz, liveness on /healthz, on the public port.
	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe missing or not httpGet", what)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s probe path %s, want %s", what, p.HTTPGet.Path, path)
		}
		if port, ok := portOf(p.HTTPGet.Port); !ok || port != httpPort(cfg.HTTPAddr) {
			t.Errorf("%s probe port %s, want the public listener's %d", what, p.HTTPGet.Port.String(), httpPort(cfg.HTTPAddr))
		}
		if (p.HTTPGet.Scheme == corev1.URISchemeHTTPS) != (cfg.TLSCertFile != "") {
			t.Errorf("%s probe scheme %q does not match the node's TLS", what, p.HTTPGet.Scheme)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")

	// Termination: preStop, then a drain, all within the grace period.
	var preStop time.Duration
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Error("no preStop hook: the pod would get SIGTERM while still in the Endpoints")
	} else if s := c.Lifecycle.PreStop.Sleep; s != nil {
		preStop = time.Duration(s.Seconds) * time.Second
	}
	drain := preStop + cfg.Cluster.DrainDelay.D() + cfg.Cluster.DrainSpread.D() + 15*time.Second
	grace := time.Duration(ptrOr(pod.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
	t.Logf("termination: preStop %s + drain_delay %s + drain_spread %s + 15 s = %s; grace period %s",
		preStop, cfg.Cluster.DrainDelay.D(), cfg.Cluster.DrainSpread.D(), drain, grace)
	if grace <= drain {
		t.Errorf("terminationGracePeriodSeconds %s, want above %s", grace, drain)
	}

	// Resources, non-root, read-only root file system.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}
	if sc := pod.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pod does not require a non-root user")
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container: want readOnlyRootFilesystem and no privilege escalation")
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == cfg.DataDir }) {
		t.Errorf("data_dir %s is not a mounted volume (the root file system is read-only)", cfg.DataDir)
	}
	// Files the node reads (remote TLS, TLS) are in a mounted Secret that
	// has them.
	for key, path := range map[string]string{
		"cluster.remote_tls_cert": cfg.Cluster.RemoteTLSCert, "cluster.remote_tls_key": cfg.Cluster.RemoteTLSKey,
		"cluster.remote_tls_ca": cfg.Cluster.RemoteTLSCA, "tls_cert_file": cfg.TLSCertFile, "tls_key_file": cfg.TLSKeyFile,
	} {
		if path == "" {
			continue
		}
		found := false
		for _, m := range c.VolumeMounts {
			rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
			if !ok {
				continue
			}
			for _, v := range pod.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil && secretKeys[v.Secret.SecretName][rel] {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s %s: no mounted Secret holds it", key, path)
		}
	}

	// The autoscaler scales this StatefulSet, never below the disruption
	// budget's needs.
	h := o.hpas[0]
	if ref := h.Spec.ScaleTargetRef; ref.Kind != "StatefulSet" || ref.Name != ss.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HorizontalPodAutoscaler targets %+v, want the StatefulSet %s", ref, ss.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas || len(h.Spec.Metrics) == 0 {
		t.Errorf("HorizontalPodAutoscaler: min %v max %d metrics %d", h.Spec.MinReplicas, h.Spec.MaxReplicas, len(h.Spec.Metrics))
	}
	if ss.Spec.Replicas == nil || *ss.Spec.Replicas < *h.Spec.MinReplicas {
		t.Errorf("StatefulSet replicas %v below the autoscaler's minimum", ss.Spec.Replicas)
	}
	if ss.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		t.Errorf("update strategy %q, want RollingUpdate (one pod at a time, waiting for ready)", ss.Spec.UpdateStrategy.Type)
	}
	if !bytes.Contains([]byte(c.Image), []byte("couponmesh")) {
		t.Errorf("image %q", c.Image)
	}
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
