package router_test

import (
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/student"
)

// TestFieldAgreement: when the teacher answers with records, the scores of
// the serving version carry agreement per field, in the view, in the
// metrics of the domains the metrics name, and across a restart. The gate
// still runs on whole records.
func TestFieldAgreement(t *testing.T) {
	e := newEnv(t)
	r, err := router.New(testConfig, router.Deps{Store: e.db, Shadow: e.submit, Domains: router.NewMetricDomains(1)})
	if err != nil {
		t.Fatal(err)
	}
	norm := student.Normalizer{FoldCase: true}
	teacher := norm.Label(`{"spam":true,"kind":"phish"}`)
	right := student.Prediction{Label: teacher, Confidence: 1}
	wrongKind := student.Prediction{Label: norm.Label(`{"spam":true,"kind":"promo"}`), Confidence: 1}
	for _, domain := range []string{"mail", "other"} {
		e.add(r, domain, 1)
		if _, err := r.Act(domain, "promote"); err != nil {
			t.Fatal(err)
		}
		// 100 sampled answers (uniform): kind wrong twice (more would
		// demote the version: the gate runs on whole records).
		for i := range router.PersistEvery {
			p := right
			if i%50 == 0 {
				p = wrongKind
			}
			r.Answered(router.Outcome{Domain: domain, Route: router.RouteTeacher, Teacher: teacher, Student: p, Version: 1, Sampled: true})
		}
	}
	want := []shadow.FieldStats{
		{Path: "kind", Samples: 100, Confident: 100, Agree: 98, Agreement: 0.98, Coverage: 1},
		{Path: "spam", Samples: 100, Confident: 100, Agree: 100, Agreement: 1, Coverage: 1},
	}
	v, _ := r.View("mail")
	if v.ServingStats == nil || !reflect.DeepEqual(v.ServingStats.Fields, want) {
		t.Fatalf("serving fields %+v\nwant %+v", v.ServingStats, want)
	}
	if v.State != router.Serving || v.ServingStats.ConfidentAgree != 98 || v.ServingStats.Confident != 100 {
		t.Errorf("%s, whole records: %d of %d agree, want serving, 98 of 100", v.State, v.ServingStats.ConfidentAgree, v.ServingStats.Confident)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(r)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "understudy_shadow_field_agreement" && f.GetName() != "understudy_shadow_field_coverage" {
			continue
		}
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	wantMetrics := map[string]float64{
		"understudy_shadow_field_agreement domain=mail field=kind role=serving version=1": 0.98,
		"understudy_shadow_field_agreement domain=mail field=spam role=serving version=1": 1,
		"understudy_shadow_field_coverage domain=mail field=kind role=serving version=1":  1,
		"understudy_shadow_field_coverage domain=mail field=spam role=serving version=1":  1,
	}
	if !reflect.DeepEqual(got, wantMetrics) {
		t.Errorf("field metrics %v\nwant (the second domain past the metrics' bound has none) %v", got, wantMetrics)
	}

	// Kept with the evidence: a restarted router shows them.
	r.Flush()
	r2 := e.router(testConfig)
	if v, _ := r2.View("mail"); v.ServingStats == nil || !reflect.DeepEqual(v.ServingStats.Fields, want) {
		t.Errorf("after a restart: %+v", v.ServingStats)
	}
}
