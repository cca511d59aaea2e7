package storage

import (
	"fmt"
	"slices"
	"testing"
)

func names(ds []Domain) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Name)
	}
	return out
}

// TestChangedSince: after a first call that returns every domain, each
// call returns only the domains whose pairs or settings changed since the
// one before, with their counts current.
func TestChangedSince(t *testing.T) {
	db, _ := open(t, Options{})
	logTo := func(domains ...string) {
		for _, d := range domains {
			if !db.Log(Pair{Domain: d, Input: "x", Answer: "a", Label: "a"}) {
				t.Fatal("pair dropped")
			}
		}
		flush(t, db)
	}
	changed := func(cursor uint64) ([]Domain, uint64) {
		t.Helper()
		ds, next, err := db.ChangedSince(cursor)
		if err != nil {
			t.Fatal(err)
		}
		return ds, next
	}
	logTo("a", "b", "c")
	ds, cur := changed(0)
	if got := names(ds); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("first call: %v, want every domain", got)
	}
	if ds, _ := changed(cur); len(ds) != 0 {
		t.Errorf("nothing logged: %v changed", names(ds))
	}
	logTo("b", "b")
	ds, cur = changed(cur)
	if got := names(ds); !slices.Equal(got, []string{"b"}) || ds[0].Pairs != 3 || ds[0].Logged != 3 {
		t.Fatalf("after 2 pairs of b: %+v, want b with 3 pairs", ds)
	}
	if err := db.SetDomainSetting("c", "k", "v"); err != nil {
		t.Fatal(err)
	}
	ds, cur = changed(cur)
	if got := names(ds); !slices.Equal(got, []string{"c"}) || ds[0].Settings["k"] != "v" {
		t.Fatalf("after a setting of c: %+v, want c with it", ds)
	}
	// A setting is ordered after the pairs enqueued before it: c is
	// returned until a pair enqueued after it is written, then no more.
	logTo("a")
	ds, cur = changed(cur)
	if got := names(ds); !slices.Contains(got, "a") || slices.Contains(got, "b") {
		t.Errorf("after a pair of a: %v, want a (and perhaps c), not b", got)
	}
	logTo("b")
	ds, _ = changed(cur)
	if got := names(ds); !slices.Equal(got, []string{"b"}) {
		t.Errorf("after a pair of b: %v, want [b]", got)
	}
}

// TestDomainsPage: walking the pages by their last name visits every
// domain once, in order, each page with the total.
func TestDomainsPage(t *testing.T) {
	db, _ := open(t, Options{})
	var want []string
	for i := range 25 {
		name := fmt.Sprintf("d%02d", i)
		want = append(want, name)
		db.Log(Pair{Domain: name, Input: "x", Answer: "a", Label: "a"})
	}
	flush(t, db)
	var got []string
	after, pages := "", 0
	for {
		p, err := db.DomainsPage(after, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if p.Total != 25 {
			t.Errorf("page %d: total %d, want 25", pages, p.Total)
		}
		got = append(got, names(p.Domains)...)
		if !p.More {
			break
		}
		after = p.Domains[len(p.Domains)-1].Name
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("%d pages: %v, want %v", pages, got, want)
	}
	if p, err := db.DomainsPage("d24", 10); err != nil || len(p.Domains) != 0 || p.More {
		t.Errorf("after the last: %+v, %v", p, err)
	}
	if got := db.DomainNames("d1"); len(got) != 10 || !slices.Contains(got, "d13") {
		t.Errorf("DomainNames(d1) = %v, want d10..d19", got)
	}
	if d := mustDomain(t, db, "d03"); d.Labels["a"] != 1 {
		t.Errorf("labels of d03: %v", d.Labels)
	}
}
