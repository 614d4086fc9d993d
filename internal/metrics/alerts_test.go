package metrics_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

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

// selector finds the names of syncworker's and asynq's metrics in a PromQL
// expression, with their label matchers if any.
var selector = regexp.MustCompile(`\b((?:syncworker|asynq)_[a-z_]+)\b(?:\{([^}]*)\})?`)

// matcher finds the equality matchers of a selector.
var matcher = regexp.MustCompile(`([a-z_]+)\s*=\s*"([^"]*)"`)

// templateFuncs stand for the functions of Prometheus's alert templates
// that the rules may use, for a parse of their annotations.
var templateFuncs = template.FuncMap{
	"humanize": fmt.Sprint, "humanizeDuration": fmt.Sprint, "humanizePercentage": fmt.Sprint,
	"humanizeTimestamp": fmt.Sprint, "printf": fmt.Sprintf, "title": strings.ToTitle,
}

// The shipped alerting rules are whole (a name, an expression, a severity,
// a summary and a description each, a duration Prometheus reads, templates
// that parse), and every metric and label value they name is one a worker
// exports: a rule on a metric or a label value that was renamed would never
// fire. (The PromQL itself is not parsed here: promtool check rules does.)
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
	m.Source("j").Waited(time.Millisecond)
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
			case strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") || strings.Count(r.Expr, "[") != strings.Count(r.Expr, "]"):
				t.Errorf("%s: unbalanced brackets in %s", r.Alert, r.Expr)
			}
			seen[r.Alert] = true
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			for name, text := range r.Annotations {
				// Prometheus defines these before each annotation.
				defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
				if _, err := template.New(name).Funcs(templateFuncs).Parse(defs + text); err != nil {
					t.Errorf("%s: annotation %s: %v", r.Alert, name, err)
				}
			}
			for _, sel := range selector.FindAllStringSubmatch(r.Expr, -1) {
				checkSelector(t, r.Alert, exported, sel[1], sel[2])
			}
		}
	}
	if n < 5 {
		t.Errorf("%d rules, want the set of configs/alerts.yml", n)
	}
}

// checkSelector checks that the metric name of a rule's selector is a
// family that exported has (a histogram's by its _bucket, _sum or _count),
// and that each value its equality matchers ask for is in one of its series.
func checkSelector(t *testing.T, alert string, exported harness.Scraped, name, matchers string) {
	t.Helper()
	f := exported[name]
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if h := exported[strings.TrimSuffix(name, suffix)]; f == nil && strings.HasSuffix(name, suffix) && h.GetType() == dto.MetricType_HISTOGRAM {
			f = h
		}
	}
	if f == nil {
		t.Errorf("%s: %s is not exported", alert, name)
		return
	}
	for _, mt := range matcher.FindAllStringSubmatch(matchers, -1) {
		label, value := mt[1], mt[2]
		found := false
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				found = found || (l.GetName() == label && l.GetValue() == value)
			}
		}
		if !found {
			t.Errorf("%s: no series of %s has %s=%q", alert, name, label, value)
		}
	}
}
