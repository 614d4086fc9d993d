package metrics_test

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/syncworker/syncworker/internal/fault"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/metrics"
)

// alertRules is the layout of a Prometheus rule file.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// metricName finds the names of syncworker's and asynq's metrics in a
// PromQL expression.
var metricName = regexp.MustCompile(`\b(?:syncworker|asynq)_[a-z_]+\b`)

// The shipped alerting rules are whole (a name, an expression, a severity
// and a summary each, a duration Prometheus reads), and every metric they
// name is one a worker exports: a rule on a metric that was renamed would
// never fire.
func TestAlertRules(t *testing.T) {
	body, err := os.ReadFile("../../configs/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(strings.NewReader(string(body)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("configs/alerts.yml: %v", err)
	}

	m, url := cluster(t, func() bool { return true })
	// Every family of the process with a series: one of each label set.
	m.BatchDone("j", metrics.BatchCommitted, time.Second)
	m.ItemsDone("j", 1, 1)
	m.RecordsLanded("j", 1)
	src := m.Source("j")
	src.Fetched(time.Millisecond, fault.Wrap(fault.RunFatal, errors.New("401")))
	src.Waited(time.Millisecond)
	exported := harness.Scrape(t, url)

	seen := map[string]bool{}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			switch {
			case r.Alert == "" || seen[r.Alert]:
				t.Errorf("rule %d of group %s: alert name %q missing or used twice", n, g.Name, r.Alert)
			case strings.TrimSpace(r.Expr) == "":
				t.Errorf("%s: no expr", r.Alert)
			case r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical":
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
			case r.Annotations["summary"] == "" || r.Annotations["description"] == "":
				t.Errorf("%s: a summary and a description are wanted", r.Alert)
			case strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")"):
				t.Errorf("%s: unbalanced parentheses in %s", r.Alert, r.Expr)
			}
			seen[r.Alert] = true
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			for _, name := range metricName.FindAllString(r.Expr, -1) {
				family := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if f := strings.TrimSuffix(name, suffix); f != name && exported[f] != nil {
						family = f
					}
				}
				if exported[family] == nil {
					t.Errorf("%s: %s is not exported", r.Alert, name)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("%d rules, want the set of configs/alerts.yml", n)
	}
}
