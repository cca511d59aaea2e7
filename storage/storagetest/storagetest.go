// Package storagetest is the conformance suite of Understudy's storage
// backends: what a user of the pair log and of the records notices, the
// same for the embedded Badger DB and for NATS JetStream. Each backend's
// tests call Run with a function that makes fresh data for one test; the
// suite opens stores on it, logs, reads, closes and reopens them.
//
// What the backends may do differently is left out or said: the order of
// pairs logged with caller-given IDs out of time order, how long after an
// expiry the counts show it, and label counts once retention removed some
// pairs of a domain with several labels (exact on Badger, approximate on
// NATS; see storage/jetstream).
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/understudy-dev/understudy/storage"
)

// Store is what the suite asks of a backend: every storage interface, and
// Flush and Close.
type Store interface {
	storage.PairLog
	storage.DomainRecords
	storage.StudentArtifacts
	storage.RoutingRecords
	storage.Responses
	Flush(ctx context.Context) error
	Close() error
}

// Options are the settings a test opens its store with; a zero field is
// the backend's default.
type Options struct {
	TTL               time.Duration
	MaxPairsPerDomain int
	QueueSize         int
}

// Backend is one backend's data, fresh for one test.
type Backend struct {
	// Open opens a store on the data. Opened again after Close, it finds
	// what the closed store kept.
	Open func(o Options) (Store, error)
	// Retain applies retention now (TTL and the per-domain cap) and
	// brings the stored pair counts up to date.
	Retain func(s Store) error
}

// Run runs the suite. newBackend makes fresh data for one test and
// cleans it up when the test ends.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"PairsOldestFirst", testPairsOldestFirst},
		{"Counts", testCounts},
		{"ChangedSince", testChangedSince},
		{"Settings", testSettings},
		{"Students", testStudents},
		{"RoutingRecords", testRoutingRecords},
		{"Responses", testResponses},
		{"RetentionCap", testRetentionCap},
		{"InvalidDomain", testInvalidDomain},
		{"DomainNames", testDomainNames},
		{"DomainsPage", testDomainsPage},
		{"FlushCloseLosesNothing", testFlushCloseLosesNothing},
		{"ConcurrentLog", testConcurrentLog},
		// These wait for an expiry: they run beside each other.
		{"ResponsesTTL", testResponsesTTL},
		{"RetentionTTL", testRetentionTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasSuffix(tc.name, "TTL") {
				t.Parallel()
			}
			tc.fn(t, newBackend(t))
		})
	}
}

// open opens a store and closes it when the test ends.
func open(t *testing.T, b Backend, o Options) Store {
	t.Helper()
	s, err := b.Open(o)
	if err != nil {
		t.Fatalf("opening the store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func flush(t *testing.T, s Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func mustLog(t *testing.T, s Store, ps ...storage.Pair) {
	t.Helper()
	for _, p := range ps {
		if !s.Log(p) {
			t.Fatalf("Log(%s: %q) dropped the pair", p.Domain, p.Input)
		}
	}
}

func pairsOf(t *testing.T, s Store, domain string) []storage.Pair {
	t.Helper()
	var out []storage.Pair
	if err := s.Pairs(context.Background(), domain, func(p storage.Pair) error {
		out = append(out, p)
		return nil
	}); err != nil {
		t.Fatalf("Pairs(%s): %v", domain, err)
	}
	return out
}

func inputs(ps []storage.Pair) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Input
	}
	return out
}

// pair is a pair of domain logged at time at.
func pair(domain, input, label string, at time.Time) storage.Pair {
	return storage.Pair{Domain: domain, Model: "gpt-4o-mini", Input: input, System: "Classify.",
		Answer: strings.ToUpper(label), Label: label, PromptTokens: 12, CompletionTokens: 1,
		TeacherLatency: 250 * time.Millisecond, Time: at}
}

// samePair reports how got differs from want, which was logged.
func samePair(got, want storage.Pair) string {
	var d []string
	if got.ID == "" || want.ID != "" && got.ID != want.ID {
		d = append(d, fmt.Sprintf("ID %q, want %q", got.ID, want.ID))
	}
	if !got.Time.Equal(want.Time) {
		d = append(d, fmt.Sprintf("Time %v, want %v", got.Time, want.Time))
	}
	if got.Domain != want.Domain || got.Model != want.Model || got.Input != want.Input || got.System != want.System ||
		got.Answer != want.Answer || got.Label != want.Label || got.PromptTokens != want.PromptTokens ||
		got.CompletionTokens != want.CompletionTokens || got.TeacherLatency != want.TeacherLatency ||
		got.Stream != want.Stream || got.Deferred != want.Deferred {
		d = append(d, fmt.Sprintf("%+v, want %+v", got, want))
	}
	if !bytes.Equal(got.Messages, want.Messages) || (got.Messages == nil) != (want.Messages == nil) {
		d = append(d, fmt.Sprintf("Messages %q, want %q", got.Messages, want.Messages))
	}
	return strings.Join(d, "; ")
}

// testPairsOldestFirst: pairs come back as logged, every field, oldest
// first, one domain alone; fn's error stops Pairs.
func testPairsOldestFirst(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	t0 := time.Now().Add(-time.Hour)
	var want []storage.Pair
	for i := range 40 {
		p := pair("spam", fmt.Sprintf("mail %d", i), []string{"spam", "ham"}[i%2], t0.Add(time.Duration(i)*time.Second))
		switch i {
		case 3:
			p.Messages = json.RawMessage(`[{"role":"user","content":"mail 3"}]`)
			p.Stream, p.Deferred = true, true
		case 7:
			p.ID = ulid.MustNew(ulid.Timestamp(p.Time), rand.Reader).String()
			p.Time = time.Time{} // from the ID
		}
		mustLog(t, s, p)
		if p.Time.IsZero() {
			p.Time = ulid.Time(ulid.MustParse(p.ID).Time())
		}
		want = append(want, p)
		mustLog(t, s, pair("other", fmt.Sprintf("other %d", i), "x", p.Time))
	}
	flush(t, s)
	got := pairsOf(t, s, "spam")
	if len(got) != len(want) {
		t.Fatalf("Pairs(spam) = %d pairs %q, want %d", len(got), inputs(got), len(want))
	}
	for i := range want {
		if d := samePair(got[i], want[i]); d != "" {
			t.Errorf("pair %d: %s", i, d)
		}
	}
	if n := len(pairsOf(t, s, "never-logged")); n != 0 {
		t.Errorf("a domain never logged has %d pairs", n)
	}

	stop := errors.New("stop")
	n := 0
	err := s.Pairs(context.Background(), "spam", func(storage.Pair) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("Pairs with fn failing at the 3rd pair: err %v after %d pairs, want stop after 3", err, n)
	}
}

// testCounts: a domain's record counts its pairs and labels, and first
// and last times; Summaries and Domains list every domain by name.
func testCounts(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	t0 := time.Now().Add(-time.Minute).Round(time.Millisecond)
	labels := map[string]int64{"spam": 5, "ham": 3, "phishing": 1}
	i := 0
	for l, n := range labels {
		for range n {
			mustLog(t, s, pair("mail", fmt.Sprintf("m%d", i), l, t0.Add(time.Duration(i)*time.Second)))
			i++
		}
	}
	mustLog(t, s, pair("intent", "book a table", "booking", t0))
	flush(t, s)

	d, err := s.Domain("mail")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "mail" || d.Pairs != 9 || d.Logged != 9 {
		t.Errorf("mail: %d pairs, %d logged, want 9 and 9", d.Pairs, d.Logged)
	}
	if !maps.Equal(d.Labels, labels) {
		t.Errorf("mail labels = %v, want %v", d.Labels, labels)
	}
	if !d.FirstSeen.Equal(t0) || !d.LastSeen.Equal(t0.Add(8*time.Second)) {
		t.Errorf("mail seen %v .. %v, want %v .. %v", d.FirstSeen, d.LastSeen, t0, t0.Add(8*time.Second))
	}
	if top := d.TopLabels(1); len(top) != 1 || top[0].Label != "spam" || top[0].Count != 5 {
		t.Errorf("top label = %+v, want spam 5", top)
	}
	if _, err := s.Domain("never-logged"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Domain(never-logged): %v, want ErrNotFound", err)
	}

	sums, err := s.Summaries()
	if err != nil {
		t.Fatal(err)
	}
	if names := domainNames(sums); !slices.Equal(names, []string{"intent", "mail"}) {
		t.Fatalf("Summaries = %q, want intent, mail", names)
	}
	if sums[1].Pairs != 9 || sums[1].Logged != 9 || sums[1].Labels != nil || sums[1].Settings == nil {
		t.Errorf("summary of mail = %+v, want 9 pairs, 9 logged, no labels, settings not nil", sums[1])
	}
	all, err := s.Domains()
	if err != nil {
		t.Fatal(err)
	}
	if names := domainNames(all); !slices.Equal(names, []string{"intent", "mail"}) {
		t.Fatalf("Domains = %q, want intent, mail", names)
	}
	if all[0].Pairs != 1 || all[0].Labels["booking"] != 1 || !maps.Equal(all[1].Labels, labels) {
		t.Errorf("Domains = %+v", all)
	}
}

func domainNames(ds []storage.Domain) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Name
	}
	return out
}

// testChangedSince: cursor 0 lists every domain; a later cursor lists a
// domain whose pairs or settings changed since, with its new counts.
func testChangedSince(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	now := time.Now()
	mustLog(t, s, pair("a", "1", "x", now), pair("b", "1", "x", now))
	flush(t, s)
	ds, cur, err := s.ChangedSince(0)
	if err != nil {
		t.Fatal(err)
	}
	if names := domainNames(ds); !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("ChangedSince(0) = %q, want a, b", names)
	}
	mustLog(t, s, pair("b", "2", "x", now), pair("b", "3", "y", now))
	flush(t, s)
	ds, cur, err = s.ChangedSince(cur)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ds, func(d storage.Domain) bool { return d.Name == "b" })
	if i < 0 || ds[i].Logged != 3 || ds[i].Pairs != 3 {
		t.Fatalf("ChangedSince after logging to b = %+v, want b with 3 pairs", ds)
	}
	if err := s.SetDomainSetting("a", "k", "v"); err != nil {
		t.Fatal(err)
	}
	ds, _, err = s.ChangedSince(cur)
	if err != nil {
		t.Fatal(err)
	}
	i = slices.IndexFunc(ds, func(d storage.Domain) bool { return d.Name == "a" })
	if i < 0 || ds[i].Settings["k"] != "v" || ds[i].Logged != 1 {
		t.Fatalf("ChangedSince after a setting of a = %+v, want a with k=v", ds)
	}
}

// testSettings: settings are kept per domain, an empty value removes one,
// and a domain must exist to have them.
func testSettings(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	if err := s.SetDomainSetting("ghost", "k", "v"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("setting of a domain never logged: %v, want ErrNotFound", err)
	}
	mustLog(t, s, pair("a", "1", "x", time.Now()))
	flush(t, s)
	if err := s.SetDomainSetting("a", "", "v"); err == nil {
		t.Error("an empty key was accepted")
	}
	for _, kv := range [][2]string{{"trainer.logged_at_last_run", "200"}, {"note", "hello"}, {"note", "bye"}, {"gone", "soon"}, {"gone", ""}} {
		if err := s.SetDomainSetting("a", kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"trainer.logged_at_last_run": "200", "note": "bye"}
	d, err := s.Domain("a")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(d.Settings, want) || d.Logged != 1 {
		t.Errorf("Domain(a) = %+v, want settings %v and 1 logged", d, want)
	}
	// Pairs logged after a setting keep it, and it shows in summaries.
	mustLog(t, s, pair("a", "2", "x", time.Now()))
	flush(t, s)
	sums, err := s.Summaries()
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || !maps.Equal(sums[0].Settings, want) || sums[0].Logged != 2 {
		t.Errorf("Summaries = %+v, want a with %v and 2 logged", sums, want)
	}
}

// testStudents: versions round-trip, artifacts of a few MB included,
// oldest first; a version stored again replaces the last or is refused
// (storage.StudentArtifacts).
func testStudents(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	big := make([]byte, 3<<20+12345)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStudent("spam.v2", 2, []byte(`{"tau":0.9}`), big); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStudent("spam.v2", 1, []byte(`{"tau":0.8}`), []byte("small")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStudent("spam", 1, []byte(`{}`), []byte("another domain")); err != nil {
		t.Fatal(err)
	}
	vs, err := s.StudentVersions("spam.v2")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Version != 1 || vs[1].Version != 2 || string(vs[1].Meta) != `{"tau":0.9}` || vs[0].Domain != "spam.v2" {
		t.Fatalf("StudentVersions = %+v, want v1 and v2 of spam.v2 with their metadata", vs)
	}
	got, err := s.StudentArtifact("spam.v2", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Errorf("artifact v2: %d bytes back, want the %d stored", len(got), len(big))
	}
	// Stored again, a version is replaced (Badger, one process) or
	// refused with ErrFenced and kept as it was (a store replicas share).
	wantArt, wantMeta := "replaced", `{"tau":0.85}`
	err = s.PutStudent("spam.v2", 1, []byte(wantMeta), []byte(wantArt))
	switch {
	case errors.Is(err, storage.ErrFenced):
		wantArt, wantMeta = "small", `{"tau":0.8}`
	case err != nil:
		t.Fatal(err)
	}
	if got, err := s.StudentArtifact("spam.v2", 1); err != nil || string(got) != wantArt {
		t.Errorf("v1 stored again: %q, %v; want %q", got, err, wantArt)
	}
	if vs, err := s.StudentVersions("spam.v2"); err != nil || len(vs) != 2 || string(vs[0].Meta) != wantMeta {
		t.Errorf("versions after v1 stored again: %+v, %v", vs, err)
	}
	if _, err := s.StudentArtifact("spam.v2", 3); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing version: %v, want ErrNotFound", err)
	}
	if vs, err := s.StudentVersions("nobody"); err != nil || len(vs) != 0 {
		t.Errorf("versions of a domain without students: %+v, %v", vs, err)
	}
	if err := s.PutStudent("a/b", 1, nil, []byte("x")); err == nil {
		t.Error("a student of an invalid domain was stored")
	}
	if err := s.PutStudent("spam", 0, nil, []byte("x")); err == nil {
		t.Error("version 0 was stored")
	}
}

// testRoutingRecords: the last record of each domain, as stored.
func testRoutingRecords(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	recs, err := s.RoutingRecords()
	if err != nil || len(recs) != 0 {
		t.Fatalf("RoutingRecords of a new store: %v, %v", recs, err)
	}
	for _, r := range [][2]string{{"a.b", `{"state":"collecting"}`}, {"c", `{"state":"shadowing"}`}, {"a.b", `{"state":"serving"}`}} {
		if err := s.PutRoutingRecord(r[0], []byte(r[1])); err != nil {
			t.Fatal(err)
		}
	}
	recs, err = s.RoutingRecords()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || string(recs["a.b"]) != `{"state":"serving"}` || string(recs["c"]) != `{"state":"shadowing"}` {
		t.Errorf("RoutingRecords = %q", recs)
	}
	if err := s.PutRoutingRecord("a b", []byte("{}")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("record of an invalid domain: %v, want ErrNotFound", err)
	}
}

// testResponses: kept responses round-trip by id, whatever its
// characters, and are deleted.
func testResponses(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	ids := []string{"resp_68af3c2e1b5c81a0", "resp with spaces/and.dots*>", strings.Repeat("r", 128)}
	for i, id := range ids {
		if err := s.PutResponse(id, []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatalf("PutResponse(%q): %v", id, err)
		}
	}
	for i, id := range ids {
		if got, err := s.Response(id); err != nil || string(got) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Errorf("Response(%q) = %q, %v", id, got, err)
		}
	}
	if _, err := s.Response("resp_missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing response: %v, want ErrNotFound", err)
	}
	if err := s.DeleteResponse(ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Response(ids[0]); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted response: %v, want ErrNotFound", err)
	}
	if err := s.DeleteResponse(ids[0]); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleting it again: %v, want ErrNotFound", err)
	}
	for _, id := range []string{"", strings.Repeat("r", 129)} {
		if err := s.PutResponse(id, []byte("{}")); err == nil {
			t.Errorf("PutResponse(%d-byte id) accepted it", len(id))
		}
	}
}

// eventually calls cond until it holds, for up to a minute: the suite
// waits for expiries without betting on how soon they come.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after a minute", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testResponsesTTL: a kept response expires with the TTL.
func testResponsesTTL(t *testing.T, b Backend) {
	const ttl = 2 * time.Second
	s := open(t, b, Options{TTL: ttl})
	put := time.Now()
	if err := s.PutResponse("resp_short", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Response("resp_short")
	if time.Since(put) < ttl/2 && err != nil {
		t.Fatalf("a fresh response: %q, %v", got, err)
	}
	eventually(t, "the response expiring", func() (bool, error) {
		_, err := s.Response("resp_short")
		if errors.Is(err, storage.ErrNotFound) {
			return true, nil
		}
		return false, err
	})
	if time.Since(put) < ttl/2 {
		t.Errorf("the response expired after %v, TTL %v", time.Since(put), ttl)
	}
}

// testRetentionCap: a domain keeps its newest MaxPairsPerDomain pairs;
// its record counts what is stored, and what was ever logged.
func testRetentionCap(t *testing.T, b Backend) {
	s := open(t, b, Options{MaxPairsPerDomain: 5})
	t0 := time.Now().Add(-time.Minute)
	for i := range 12 {
		mustLog(t, s, pair("capped", fmt.Sprint(i), "x", t0.Add(time.Duration(i)*time.Second)))
	}
	mustLog(t, s, pair("small", "only", "y", t0))
	flush(t, s)
	if err := b.Retain(s); err != nil {
		t.Fatal(err)
	}
	if got := inputs(pairsOf(t, s, "capped")); !slices.Equal(got, []string{"7", "8", "9", "10", "11"}) {
		t.Errorf("capped keeps %q, want the newest 5 oldest first", got)
	}
	d, err := s.Domain("capped")
	if err != nil {
		t.Fatal(err)
	}
	if d.Pairs != 5 || d.Logged != 12 || d.Labels["x"] != 5 {
		t.Errorf("capped: %d pairs, %d logged, labels %v; want 5, 12, x:5", d.Pairs, d.Logged, d.Labels)
	}
	sums, err := s.Summaries()
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 || sums[0].Pairs != 5 || sums[1].Pairs != 1 {
		t.Errorf("Summaries = %+v, want capped with 5 pairs, small with 1", sums)
	}
}

// testRetentionTTL: a pair older than the TTL (logged with its old time)
// is removed; a recent one stays.
func testRetentionTTL(t *testing.T, b Backend) {
	s := open(t, b, Options{TTL: time.Hour})
	mustLog(t, s, pair("aged", "old", "x", time.Now().Add(-2*time.Hour)), pair("aged", "new", "x", time.Now()))
	flush(t, s)
	eventually(t, "the old pair expiring", func() (bool, error) {
		if err := b.Retain(s); err != nil {
			return false, err
		}
		d, err := s.Domain("aged")
		return d.Pairs == 1 && len(pairsOf(t, s, "aged")) == 1, err
	})
	if got := inputs(pairsOf(t, s, "aged")); !slices.Equal(got, []string{"new"}) {
		t.Errorf("aged keeps %q, want the new pair", got)
	}
	if d, err := s.Domain("aged"); err != nil || d.Logged != 2 {
		t.Errorf("aged: %+v, %v; want 2 logged", d, err)
	}
}

// testInvalidDomain: a name that cannot be a domain is refused
// everywhere, and nothing is kept for it.
func testInvalidDomain(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	for _, name := range []string{"", "a/b", "a b", ".", "..", "a*", "a>", "é", strings.Repeat("x", 65)} {
		if s.Log(pair(name, "x", "x", time.Now())) {
			t.Errorf("Log(%q) accepted it", name)
		}
		if _, err := s.Domain(name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Domain(%q): %v, want ErrNotFound", name, err)
		}
		if err := s.Pairs(context.Background(), name, func(storage.Pair) error { return nil }); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Pairs(%q): %v, want ErrNotFound", name, err)
		}
		if err := s.SetDomainSetting(name, "k", "v"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("SetDomainSetting(%q): %v, want ErrNotFound", name, err)
		}
	}
	bad := pair("ok", "x", "x", time.Time{})
	bad.ID = "not-a-ulid"
	if s.Log(bad) {
		t.Error("Log accepted a pair whose ID is not a ULID")
	}
	flush(t, s)
	if sums, err := s.Summaries(); err != nil || len(sums) != 0 {
		t.Errorf("Summaries after invalid pairs: %+v, %v", sums, err)
	}
}

// testDomainNames: names that differ only in '.', '-', '_' are
// different domains, each with its own pairs.
func testDomainNames(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	names := []string{"...", "a", "a-b", "a.b", "a..b", "a.b.", "a_b", "a_b_", "ab", "A.b", "_", "-", "x.y-z_1." + strings.Repeat("9", 56)}
	slices.Sort(names)
	for _, n := range names {
		mustLog(t, s, pair(n, "pair of "+n, "x", time.Now()))
	}
	flush(t, s)
	sums, err := s.Summaries()
	if err != nil {
		t.Fatal(err)
	}
	if got := domainNames(sums); !slices.Equal(got, names) {
		t.Errorf("Summaries = %q, want %q", got, names)
	}
	for _, n := range names {
		if got := inputs(pairsOf(t, s, n)); !slices.Equal(got, []string{"pair of " + n}) {
			t.Errorf("Pairs(%q) = %q", n, got)
		}
		if d, err := s.Domain(n); err != nil || d.Pairs != 1 || d.Name != n {
			t.Errorf("Domain(%q) = %+v, %v", n, d, err)
		}
	}
}

// Pager is what the gateway asks of a store besides the interfaces:
// the admin API's pages of domains and the admission's known names. A
// backend that has them is held to them.
type Pager interface {
	DomainsPage(after string, limit int) (storage.DomainPage, error)
	DomainNames(prefix string) []string
}

// testDomainsPage: pages of domains by name, with their labels, and the
// names by prefix.
func testDomainsPage(t *testing.T, b Backend) {
	s := open(t, b, Options{})
	pg, ok := s.(Pager)
	if !ok {
		t.Skip("the backend has no DomainsPage or DomainNames")
	}
	for _, n := range []string{"auto-1", "auto-2", "b", "c", "d"} {
		mustLog(t, s, pair(n, "x", "l-"+n, time.Now()))
	}
	flush(t, s)
	var got []string
	after := ""
	for {
		page, err := pg.DomainsPage(after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != 5 {
			t.Errorf("page after %q: total %d, want 5", after, page.Total)
		}
		for _, d := range page.Domains {
			got = append(got, d.Name)
			if d.Labels["l-"+d.Name] != 1 || d.Pairs != 1 {
				t.Errorf("page: %+v, want 1 pair labelled l-%s", d, d.Name)
			}
		}
		if !page.More {
			break
		}
		after = page.Domains[len(page.Domains)-1].Name
	}
	if !slices.Equal(got, []string{"auto-1", "auto-2", "b", "c", "d"}) {
		t.Errorf("pages = %q", got)
	}
	if _, err := pg.DomainsPage("", 0); err == nil {
		t.Error("a page of 0 domains was served")
	}
	names := pg.DomainNames("auto-")
	slices.Sort(names)
	if !slices.Equal(names, []string{"auto-1", "auto-2"}) {
		t.Errorf("DomainNames(auto-) = %q", names)
	}
}

// testFlushCloseLosesNothing: every pair Log accepted before Close is
// stored, without a Flush; Log after Close refuses; Close twice is fine.
func testFlushCloseLosesNothing(t *testing.T, b Backend) {
	s, err := b.Open(Options{QueueSize: 10000})
	if err != nil {
		t.Fatal(err)
	}
	accepted := map[string]int{}
	for i := range 3000 {
		p := pair([]string{"d1", "d2", "d3"}[i%3], fmt.Sprint(i), "x", time.Time{})
		if s.Log(p) {
			accepted[p.Domain]++
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s.Log(pair("d1", "late", "x", time.Time{})) {
		t.Error("Log after Close accepted a pair")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	s = open(t, b, Options{})
	total := 0
	for domain, n := range accepted {
		total += n
		if got := len(pairsOf(t, s, domain)); got != n {
			t.Errorf("%s: %d pairs stored, %d accepted", domain, got, n)
		}
		if d, err := s.Domain(domain); err != nil || d.Logged != int64(n) || d.Pairs != int64(n) {
			t.Errorf("%s: %+v, %v; want %d logged and stored", domain, d, err, n)
		}
	}
	if total < 1000 {
		t.Errorf("only %d of 3000 pairs accepted into a queue of 10000", total)
	}
}

// testConcurrentLog: pairs logged from several goroutines are each
// stored once and counted once.
func testConcurrentLog(t *testing.T, b Backend) {
	s := open(t, b, Options{QueueSize: 10000})
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := map[string]int{}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := map[string]int{}
			for i := range 500 {
				p := pair([]string{"even", "odd"}[i%2], fmt.Sprintf("%d-%d", g, i), "x", time.Time{})
				if s.Log(p) {
					n[p.Domain]++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for d, c := range n {
				accepted[d] += c
			}
		}()
	}
	wg.Wait()
	flush(t, s)
	for domain, n := range accepted {
		ps := pairsOf(t, s, domain)
		ids := map[string]bool{}
		for _, p := range ps {
			ids[p.ID] = true
		}
		if len(ps) != n || len(ids) != n {
			t.Errorf("%s: %d pairs (%d ids) stored, %d accepted", domain, len(ps), len(ids), n)
		}
		if d, err := s.Domain(domain); err != nil || d.Logged != int64(n) {
			t.Errorf("%s: %+v, %v; want %d logged", domain, d, err, n)
		}
	}
}
