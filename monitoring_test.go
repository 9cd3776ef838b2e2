package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// What a platform team installs beside the package to watch ModelDownloads (monitoring/):
// kube-state-metrics' configuration, alerting rules and a Grafana dashboard. promtool checks
// the rules and runs their unit tests and a test of every dashboard query against a fleet's
// series; the e2e suite (e2e/metrics_test.go) runs kube-state-metrics with the configuration
// against live ModelDownloads, and checks that it exports those series.

// promtool is bin/promtool, which `make unit` builds (bash hack/tools.sh promtool).
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("bin", "promtool"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("bin/promtool is missing: build it with bash hack/tools.sh promtool (make unit does): %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = "monitoring"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// ksmMetrics are the names of the series monitoring/kube-state-metrics.yaml makes.
func ksmMetrics(t *testing.T) []string {
	t.Helper()
	var cfg struct {
		Kind string `json:"kind"`
		Spec struct {
			Resources []struct {
				GroupVersionKind any            `json:"groupVersionKind"`
				LabelsFromPath   map[string]any `json:"labelsFromPath"`
				MetricNamePrefix string         `json:"metricNamePrefix"`
				Metrics          []struct {
					Name string `json:"name"`
					Help string `json:"help"`
					Each any    `json:"each"`
				} `json:"metrics"`
			} `json:"resources"`
		} `json:"spec"`
	}
	b, err := os.ReadFile(filepath.Join("monitoring", "kube-state-metrics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range cfg.Spec.Resources {
		for _, m := range r.Metrics {
			names = append(names, r.MetricNamePrefix+"_"+m.Name)
		}
	}
	return names
}

// dashboardQueries are the queries of monitoring/dashboard.json's panels, with its
// variables at "All", and of its variables.
func dashboardQueries(t *testing.T) (panels, variables []string) {
	t.Helper()
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(filepath.Join("monitoring", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	all := strings.NewReplacer("$namespace", ".*", "$modeldownload", ".*")
	for _, p := range d.Panels {
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: want a query on the dashboard's ${datasource}", p.Title)
		}
		for _, tg := range p.Targets {
			panels = append(panels, all.Replace(tg.Expr))
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			variables = append(variables, q["query"].(string))
		}
	}
	return panels, variables
}

var seriesName = regexp.MustCompile(`\bhfops_modeldownload_[a-z_]+`)

// TestMonitoring: the alerting rules load, each alert has a promtool case that fires it (and
// the cases pass), every dashboard query has a promtool case with the samples it must return
// (and they pass), and rules, dashboard and test series name only series that
// kube-state-metrics makes with monitoring/kube-state-metrics.yaml.
func TestMonitoring(t *testing.T) {
	promtool(t, "check", "rules", "alerts.yaml")
	promtool(t, "test", "rules", "alerts_test.yaml", "dashboard_test.yaml")

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	var tests struct {
		Tests []struct {
			InputSeries []struct {
				Series string `json:"series"`
			} `json:"input_series"`
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
			PromQLExprTest []struct {
				Expr string `json:"expr"`
			} `json:"promql_expr_test"`
		} `json:"tests"`
	}
	read := func(name string, into any) string {
		b, err := os.ReadFile(filepath.Join("monitoring", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, into); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return string(b)
	}
	text := read("alerts.yaml", &rules)
	read("alerts_test.yaml", &tests)
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			fired[a.Alertname] = fired[a.Alertname] || len(a.ExpAlerts) > 0
		}
		for _, s := range tc.InputSeries {
			text += s.Series
		}
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if !fired[r.Alert] {
				t.Errorf("alert %s: no case in alerts_test.yaml fires it", r.Alert)
			}
		}
	}
	if len(alerts) < 5 {
		t.Errorf("alerts.yaml has %d alerts: %v", len(alerts), alerts)
	}

	panels, variables := dashboardQueries(t)
	tests.Tests = nil
	read("dashboard_test.yaml", &tests)
	var tested []string
	for _, tc := range tests.Tests {
		for _, e := range tc.PromQLExprTest {
			tested = append(tested, e.Expr)
		}
		for _, s := range tc.InputSeries {
			text += s.Series
		}
	}
	for _, q := range panels {
		if !slices.Contains(tested, q) {
			t.Errorf("dashboard query %s has no case in dashboard_test.yaml", q)
		}
	}
	for _, q := range tested {
		if !slices.Contains(panels, q) {
			t.Errorf("dashboard_test.yaml tests %s, which no panel queries", q)
		}
	}

	made := ksmMetrics(t)
	for _, q := range append(append(panels, variables...), text) {
		for _, name := range seriesName.FindAllString(q, -1) {
			if !slices.Contains(made, name) {
				t.Errorf("%s is not a series monitoring/kube-state-metrics.yaml makes (it makes %v)", name, made)
			}
		}
	}
}
