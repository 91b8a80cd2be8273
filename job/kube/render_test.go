package kube

import (
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/wharfjobs/wharfjobs/job"
)

func TestJobName(t *testing.T) {
	seen := map[string]string{}
	for _, c := range [][2]string{{"", "1"}, {"prod", "1"}, {"Prod Cluster #2", "123456789"}, {strings.Repeat("very-long-instance-", 5), "42"}, {strings.Repeat("very-long-instance-", 5), "43"}} {
		name := JobName(c[0], c[1])
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 || len(name) > MaxNameLen {
			t.Fatalf("JobName(%q, %q) = %q: %v (len %d)", c[0], c[1], name, errs, len(name))
		}
		if name != JobName(c[0], c[1]) {
			t.Fatal("JobName is not deterministic")
		}
		if prev, dup := seen[name]; dup {
			t.Fatalf("%v and %s share the name %s", c, prev, name)
		}
		seen[name] = c[0] + "/" + c[1]
	}
}

func TestRenderKeepsSecretsOutOfTheJob(t *testing.T) {
	req := job.Request{BuildRef: "9", Instance: "prod", GitFullURL: "https://g/x.git", GitToken: "tok-secret", Vars: map[string]any{"PW": "pw-secret", "N": 3}}
	j, sec, err := Render(req, Config{MemoryLimit: "500Mi"}, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	if strings.Contains(string(b), "tok-secret") || strings.Contains(string(b), "pw-secret") {
		t.Fatal("a secret is in the Job spec")
	}
	if string(sec.Data[GitTokenKey]) != "tok-secret" || string(sec.Data[VarsKey]) != `{"N":3,"PW":"pw-secret"}` {
		t.Fatalf("secret data %q", sec.Data)
	}
	c := j.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["GOMEMLIMIT"] != "419430400" || env["WHARFJOBS_BUILD_REF"] != "prod-9" {
		t.Fatalf("env %v", env)
	}
	if j.Namespace != "wharfjobs" || j.Spec.Template.Spec.ServiceAccountName != "wharfjobs-worker" || *j.Spec.ActiveDeadlineSeconds != 7200 {
		t.Fatal("zero config fields did not take the defaults")
	}
	if _, _, err := Render(req, Config{CPULimit: "two"}, false); err == nil || !strings.Contains(err.Error(), "WHARFJOBS_WORKER_CPU_LIMIT") {
		t.Fatalf("bad quantity: %v", err)
	}
}
