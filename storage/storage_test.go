package storage

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// open opens a pair log in a fresh directory (or dir, if given) with a
// quiet logger, a registry, and Close on cleanup.
func open(t *testing.T, o Options) (*DB, *prometheus.Registry) {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	reg := prometheus.NewRegistry()
	if o.Registry == nil {
		o.Registry = reg
	}
	db, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db, reg
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func flush(t *testing.T, db *DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func mustLog(t *testing.T, db *DB, ps ...Pair) {
	t.Helper()
	for _, p := range ps {
		if !db.Log(p) {
			t.Fatalf("Log(%s/%s) dropped", p.Domain, p.Input)
		}
	}
}

func allPairs(t *testing.T, db *DB, domain string) []Pair {
	t.Helper()
	var out []Pair
	if err := db.Pairs(context.Background(), domain, func(p Pair) error {
		out = append(out, p)
		return nil
	}); err != nil {
		t.Fatalf("Pairs(%s): %v", domain, err)
	}
	return out
}

func mustDomain(t *testing.T, db *DB, name string) Domain {
	t.Helper()
	d, err := db.Domain(name)
	if err != nil {
		t.Fatalf("Domain(%s): %v", name, err)
	}
	return d
}

// metric returns the value of a counter or gauge with the given labels.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// checkCounts asserts that a domain's pair and label counts equal what Pairs
// iterates: what retention and crashes must never break.
func checkCounts(t *testing.T, db *DB, domain string) {
	t.Helper()
	ps := allPairs(t, db, domain)
	labels := map[string]int64{}
	for _, p := range ps {
		labels[p.Label]++
	}
	d := mustDomain(t, db, domain)
	if d.Pairs != int64(len(ps)) {
		t.Errorf("domain %s: Pairs = %d, iterated %d", domain, d.Pairs, len(ps))
	}
	if !reflect.DeepEqual(d.Labels, labels) {
		t.Errorf("domain %s: Labels = %v, iterated %v", domain, d.Labels, labels)
	}
}

func TestPairRoundTrip(t *testing.T) {
	db, _ := open(t, Options{})
	base := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	longLabel := strings.Repeat("a very long open-ended answer ", 20)
	tests := []struct {
		name string
		in   Pair
	}{
		{"all fields", Pair{
			ID:     ulid.MustNew(ulid.Timestamp(base), ulid.DefaultEntropy()).String(),
			Time:   base,
			Domain: "spam", Model: "gpt-4o", Input: "WIN a FREE cruise", System: "Classify as spam or ham.",
			Messages: json.RawMessage(`[{"role":"system","content":"Classify as spam or ham."},{"role":"user","content":"WIN a FREE cruise"}]`),
			Answer:   "Spam.", Label: "spam", PromptTokens: 42, CompletionTokens: 2,
			TeacherLatency: 850 * time.Millisecond, Stream: true,
		}},
		{"minimal", Pair{Time: base.Add(time.Second), Domain: "spam", Input: "hi", Answer: "ham", Label: "ham"}},
		{"empty messages array kept", Pair{Time: base.Add(2 * time.Second), Domain: "spam", Messages: json.RawMessage(`[]`)}},
		{"unicode and newlines", Pair{Time: base.Add(3 * time.Second), Domain: "spam", Input: "Grüße\n\t🎉 \x00", Answer: "héllo\r\n", Label: "héllo"}},
		{"long label", Pair{Time: base.Add(4 * time.Second), Domain: "spam", Input: "x", Answer: longLabel, Label: longLabel}},
		{"large input", Pair{Time: base.Add(5 * time.Second), Domain: "spam", Input: strings.Repeat("z", 1<<20), Answer: "ham", Label: "ham"}},
	}
	for _, tt := range tests {
		mustLog(t, db, tt.in)
	}
	flush(t, db)
	got := allPairs(t, db, "spam")
	if len(got) != len(tests) {
		t.Fatalf("got %d pairs, want %d", len(got), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, w := got[i], tt.in
			if w.ID == "" {
				if len(g.ID) != 26 {
					t.Errorf("ID = %q, want a generated ULID", g.ID)
				}
				w.ID = g.ID
			}
			if !g.Time.Equal(w.Time) {
				t.Errorf("Time = %v, want %v", g.Time, w.Time)
			}
			g.Time, w.Time = time.Time{}, time.Time{}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("round trip:\n got %.300s\nwant %.300s", fmt.Sprintf("%+v", g), fmt.Sprintf("%+v", w))
			}
		})
	}
	checkCounts(t, db, "spam")
}

func TestDomainRecords(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	labels := []string{"spam", "ham", "spam", "spam", "ham", "unsure"}
	for i, l := range labels {
		mustLog(t, db, Pair{Domain: "spam", Time: t0.Add(time.Duration(i) * time.Minute), Input: fmt.Sprint(i), Answer: l, Label: l})
	}
	mustLog(t, db, Pair{Domain: "sentiment", Time: t0, Input: "great", Answer: "positive", Label: "positive"})
	flush(t, db)
	if err := db.SetDomainSetting("spam", "threshold", "0.97"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetDomainSetting("spam", "tmp", "x"); err != nil {
		t.Fatal(err)
	}
	if err := db.SetDomainSetting("spam", "tmp", ""); err != nil {
		t.Fatal(err)
	}
	// A later batch rewrites the domain record: it must keep the settings.
	mustLog(t, db, Pair{Domain: "spam", Time: t0.Add(time.Hour), Input: "late", Answer: "ham", Label: "ham"})
	flush(t, db)

	want := []Domain{
		{Name: "sentiment", FirstSeen: t0, LastSeen: t0, Pairs: 1, Logged: 1, Labels: map[string]int64{"positive": 1},
			Settings: map[string]string{}},
		{Name: "spam", FirstSeen: t0, LastSeen: t0.Add(time.Hour), Pairs: 7, Logged: 7,
			Labels:   map[string]int64{"spam": 3, "ham": 3, "unsure": 1},
			Settings: map[string]string{"threshold": "0.97"}},
	}
	check := func(t *testing.T, db *DB) {
		got, err := db.Domains()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Domains() = %d domains, want %d", len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if !g.FirstSeen.Equal(w.FirstSeen) || !g.LastSeen.Equal(w.LastSeen) {
				t.Errorf("%s: seen %v..%v, want %v..%v", w.Name, g.FirstSeen, g.LastSeen, w.FirstSeen, w.LastSeen)
			}
			g.FirstSeen, g.LastSeen, w.FirstSeen, w.LastSeen = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("domain:\n got %+v\nwant %+v", g, w)
			}
		}
		top := mustDomain(t, db, "spam").TopLabels(2)
		if wantTop := []LabelCount{{"ham", 3}, {"spam", 3}}; !reflect.DeepEqual(top, wantTop) {
			t.Errorf("TopLabels(2) = %v, want %v", top, wantTop)
		}
		// Summaries: the same, from memory, without label counts.
		sums, err := db.Summaries()
		if err != nil {
			t.Fatal(err)
		}
		for i := range sums {
			g, w := sums[i], got[i]
			w.Labels = nil
			if !reflect.DeepEqual(g, w) {
				t.Errorf("summary:\n got %+v\nwant %+v", g, w)
			}
		}
		if len(sums) != len(got) {
			t.Errorf("%d summaries of %d domains", len(sums), len(got))
		}
	}
	t.Run("open", func(t *testing.T) { check(t, db) })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, _ := open(t, Options{Dir: dir})
	t.Run("reopened", func(t *testing.T) { check(t, db2) })

	t.Run("unknown domain", func(t *testing.T) {
		for _, name := range []string{"nope", "bad/name", ""} {
			if _, err := db2.Domain(name); !errors.Is(err, ErrNotFound) {
				t.Errorf("Domain(%q) err = %v, want ErrNotFound", name, err)
			}
			if err := db2.SetDomainSetting(name, "k", "v"); !errors.Is(err, ErrNotFound) {
				t.Errorf("SetDomainSetting(%q) err = %v, want ErrNotFound", name, err)
			}
		}
	})
}

func TestTopLabels(t *testing.T) {
	d := Domain{Labels: map[string]int64{"b": 2, "a": 2, "c": 5, "d": 1}}
	tests := []struct {
		n    int
		want []LabelCount
	}{
		{1, []LabelCount{{"c", 5}}},
		{3, []LabelCount{{"c", 5}, {"a", 2}, {"b", 2}}},
		{10, []LabelCount{{"c", 5}, {"a", 2}, {"b", 2}, {"d", 1}}},
		{0, []LabelCount{{"c", 5}, {"a", 2}, {"b", 2}, {"d", 1}}},
	}
	for _, tt := range tests {
		if got := d.TopLabels(tt.n); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("TopLabels(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestPairsPerDomain(t *testing.T) {
	db, _ := open(t, Options{LogOptions: LogOptions{BatchSize: 7}})
	// "spam" is a prefix of "spam-v2" and "spam.x" as a name: each must
	// still iterate alone.
	domains := []string{"spam", "spam-v2", "spam.x", "sentiment"}
	t0 := time.Now().Add(-time.Hour)
	want := map[string][]string{}
	for i := 0; i < 200; i++ {
		d := domains[i%len(domains)]
		in := fmt.Sprintf("%s-%03d", d, i)
		// Logged in time order, IDs generated by Log from Time.
		mustLog(t, db, Pair{Domain: d, Time: t0.Add(time.Duration(i) * time.Millisecond), Input: in, Label: "l"})
		want[d] = append(want[d], in)
	}
	flush(t, db)
	for _, d := range domains {
		t.Run(d, func(t *testing.T) {
			var got []string
			var prev Pair
			for _, p := range allPairs(t, db, d) {
				if p.Domain != d {
					t.Fatalf("pair of %s in %s", p.Domain, d)
				}
				if prev.ID != "" && (p.ID <= prev.ID || p.Time.Before(prev.Time)) {
					t.Errorf("not oldest first: %s after %s", p.ID, prev.ID)
				}
				prev = p
				got = append(got, p.Input)
			}
			if !reflect.DeepEqual(got, want[d]) {
				t.Errorf("got %v\nwant %v", got, want[d])
			}
			checkCounts(t, db, d)
		})
	}
	t.Run("stop on error", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := db.Pairs(context.Background(), "spam", func(Pair) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("Pairs = %v after %d calls, want stop after 1", err, n)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := db.Pairs(ctx, "spam", func(Pair) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("Pairs = %v, want context.Canceled", err)
		}
	})
}

func TestRetentionTTL(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name      string
		ttl       time.Duration
		ages      []time.Duration // one pair per age, label by index parity
		wantKept  int
		wantLabel map[string]int64
	}{
		{"some expired", time.Hour, []time.Duration{3 * time.Hour, 2 * time.Hour, 90 * time.Minute, 30 * time.Minute, time.Minute},
			2, map[string]int64{"even": 1, "odd": 1}},
		{"all expired", time.Hour, []time.Duration{5 * time.Hour, 4 * time.Hour}, 0, map[string]int64{}},
		{"none expired", time.Hour, []time.Duration{50 * time.Minute, time.Minute}, 2, map[string]int64{"even": 1, "odd": 1}},
		{"keep forever", -1, []time.Duration{24 * 365 * time.Hour, time.Minute}, 2, map[string]int64{"even": 1, "odd": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, reg := open(t, Options{LogOptions: LogOptions{TTL: tt.ttl}})
			for i, age := range tt.ages {
				l := []string{"even", "odd"}[i%2]
				mustLog(t, db, Pair{Domain: "d", Time: now.Add(-age), Input: fmt.Sprint(i), Label: l})
			}
			flush(t, db)
			if err := db.RunRetention(); err != nil {
				t.Fatal(err)
			}
			d := mustDomain(t, db, "d")
			if d.Pairs != int64(tt.wantKept) || !reflect.DeepEqual(d.Labels, tt.wantLabel) {
				t.Errorf("after retention: %d pairs %v, want %d %v", d.Pairs, d.Labels, tt.wantKept, tt.wantLabel)
			}
			checkCounts(t, db, "d")
			if got := metric(t, reg, "understudy_storage_retention_deleted_total", "reason", "ttl"); got != float64(len(tt.ages)-tt.wantKept) {
				t.Errorf("retention_deleted_total{ttl} = %v, want %d", got, len(tt.ages)-tt.wantKept)
			}
			// A second pass finds nothing more.
			if err := db.RunRetention(); err != nil {
				t.Fatal(err)
			}
			checkCounts(t, db, "d")
		})
	}
}

// TestBadgerTTLBackstop: when Badger's own TTL fires before retention ran
// (the process was down longer than the grace period), Pairs no longer shows
// the pairs and retention still finds and counts them.
func TestBadgerTTLBackstop(t *testing.T) {
	db, _ := open(t, Options{LogOptions: LogOptions{TTL: time.Second}})
	db.grace = 0
	for i := 0; i < 3; i++ {
		mustLog(t, db, Pair{Domain: "d", Input: fmt.Sprint(i), Label: "x"})
	}
	flush(t, db)
	deadline := time.Now().Add(10 * time.Second)
	for len(allPairs(t, db, "d")) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("Badger TTL did not expire the pairs")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if d := mustDomain(t, db, "d"); d.Pairs != 3 {
		t.Fatalf("before retention Pairs = %d, want 3 (not yet counted)", d.Pairs)
	}
	if err := db.RunRetention(); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, db, "d")
}

func TestRetentionCap(t *testing.T) {
	tests := []struct {
		name  string
		cap   int
		n     int
		kept  int
		large bool // labels longer than maxInlineLabel (hashed label keys)
	}{
		{"over cap", 5, 12, 5, false},
		{"at cap", 5, 5, 5, false},
		{"long labels", 3, 10, 3, true},
		{"no cap", -1, 12, 12, false},
		{"many chunks", 100, 2500, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, reg := open(t, Options{LogOptions: LogOptions{MaxPairsPerDomain: tt.cap}})
			t0 := time.Now().Add(-time.Hour)
			for i := 0; i < tt.n; i++ {
				l := fmt.Sprint("label", i%3)
				if tt.large {
					l = strings.Repeat(l, 50)
				}
				mustLog(t, db, Pair{Domain: "d", Time: t0.Add(time.Duration(i) * time.Millisecond), Input: fmt.Sprint(i), Label: l})
				mustLog(t, db, Pair{Domain: "other", Time: t0.Add(time.Duration(i) * time.Millisecond), Input: fmt.Sprint(i), Label: l})
			}
			flush(t, db)
			if err := db.RunRetention(); err != nil {
				t.Fatal(err)
			}
			ps := allPairs(t, db, "d")
			if len(ps) != tt.kept {
				t.Fatalf("kept %d pairs, want %d", len(ps), tt.kept)
			}
			if ps[0].Input != fmt.Sprint(tt.n-tt.kept) {
				t.Errorf("oldest kept = %s, want %d (the newest are kept)", ps[0].Input, tt.n-tt.kept)
			}
			checkCounts(t, db, "d")
			checkCounts(t, db, "other")
			if d, err := db.Domain("d"); err != nil || d.Logged != int64(tt.n) {
				t.Errorf("Logged = %d (%v), want %d: retention must not lower it", d.Logged, err, tt.n)
			}
			if got := metric(t, reg, "understudy_storage_retention_deleted_total", "reason", "cap"); got != float64(2*(tt.n-tt.kept)) {
				t.Errorf("retention_deleted_total{cap} = %v, want %d", got, 2*(tt.n-tt.kept))
			}
			// New pairs after retention keep counting from the right base.
			mustLog(t, db, Pair{Domain: "d", Input: "new", Label: ps[0].Label})
			flush(t, db)
			checkCounts(t, db, "d")
		})
	}
}

func writeKey(t *testing.T, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEncryption(t *testing.T) {
	raw := bytes.Repeat([]byte{0xA5}, 32)
	other := bytes.Repeat([]byte{0x5A}, 32)
	keyRaw := writeKey(t, raw)
	keyHex := writeKey(t, []byte(hex.EncodeToString(raw)+"\n"))
	keyB64 := writeKey(t, []byte("paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU=\n"))
	keyOther := writeKey(t, other)
	keyShort := writeKey(t, []byte("too short\n"))

	tests := []struct {
		name          string
		create, again string // key files at creation and at reopen ("" = none)
		wantErr       []string
	}{
		{name: "off", create: "", again: ""},
		{name: "on, same key", create: keyRaw, again: keyRaw},
		{name: "hex and base64 of the same key", create: keyHex, again: keyB64},
		{name: "wrong key", create: keyRaw, again: keyOther, wantErr: []string{"wrong encryption key", keyOther}},
		{name: "encrypted, no key", create: keyRaw, again: "", wantErr: []string{"wrong encryption key", "encrypted", "storage.encryption_key_file"}},
		{name: "plain, opened with a key", create: "", again: keyRaw, wantErr: []string{"wrong encryption key"}},
		{name: "missing key file", create: keyRaw, again: filepath.Join(t.TempDir(), "nope"), wantErr: []string{"reading encryption key file", "no such file"}},
		{name: "key file is a directory", create: keyRaw, again: t.TempDir(), wantErr: []string{"reading encryption key file"}},
		{name: "malformed key", create: keyRaw, again: keyShort, wantErr: []string{"reading encryption key file", keyShort, "32 raw bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := Open(Options{Dir: dir, EncryptionKeyFile: tt.create, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			mustLog(t, db, Pair{Domain: "d", Input: "secret input", Answer: "secret answer", Label: "l"})
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.create != "" {
				// The plaintext must not be on disk.
				filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
					if err == nil && !e.IsDir() {
						if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("secret input")) {
							t.Errorf("plaintext found in %s", p)
						}
					}
					return nil
				})
			}
			db, err = Open(Options{Dir: dir, EncryptionKeyFile: tt.again, Logger: quietLogger()})
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("reopen: %v", err)
				}
				defer db.Close()
				if ps := allPairs(t, db, "d"); len(ps) != 1 || ps[0].Input != "secret input" {
					t.Errorf("after reopen: %+v", ps)
				}
				return
			}
			if err == nil {
				db.Close()
				t.Fatal("reopen succeeded, want an error")
			}
			for _, s := range append(tt.wantErr, "opening pair log at "+dir) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestOpenDamagedOrForeignDir(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the Dir to open
		wantErr string
	}{
		{"garbage MANIFEST", func(t *testing.T, dir string) string {
			os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("this is not a badger manifest at all"), 0o644)
			return dir
		}, "not written by understudy"},
		{"empty MANIFEST", func(t *testing.T, dir string) string {
			os.WriteFile(filepath.Join(dir, "MANIFEST"), nil, 0o644)
			return dir
		}, ""},
		{"truncated pair log", func(t *testing.T, dir string) string {
			db, err := Open(Options{Dir: dir, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			db.Log(Pair{Domain: "d", Input: "x"})
			db.Close()
			os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("Bdgr"), 0o644)
			return dir
		}, ""},
		{"garbage KEYREGISTRY", func(t *testing.T, dir string) string {
			db, err := Open(Options{Dir: dir, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			os.WriteFile(filepath.Join(dir, "KEYREGISTRY"), bytes.Repeat([]byte{0xff}, 100), 0o644)
			return dir
		}, "KEYREGISTRY is damaged"},
		{"dir is a file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "file")
			os.WriteFile(p, []byte("x"), 0o644)
			return p
		}, "not a directory"},
		{"badger db of another program", func(t *testing.T, dir string) string {
			writeForeignBadger(t, dir)
			return dir
		}, "not written by understudy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t, t.TempDir())
			db, err := Open(Options{Dir: dir, Logger: quietLogger()})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if !strings.Contains(err.Error(), "opening pair log at "+dir) {
				t.Errorf("error %q does not name the directory", err)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			t.Log(err)
		})
	}
}

// TestPairsOfUnknownDomain: a domain never logged has no pairs; a name that
// cannot be a domain is ErrNotFound.
func TestPairsOfUnknownDomain(t *testing.T) {
	db, _ := open(t, Options{})
	mustLog(t, db, Pair{Domain: "elsewhere", Input: "not read", Answer: "no"})
	flush(t, db)
	n := 0
	count := func(Pair) error { n++; return nil }
	if err := db.Pairs(context.Background(), "nothing-here", count); err != nil || n != 0 {
		t.Errorf("Pairs(nothing-here) = %d pairs, %v; want 0, nil", n, err)
	}
	if err := db.Pairs(context.Background(), "not/a/domain", count); !errors.Is(err, ErrNotFound) || n != 0 {
		t.Errorf("Pairs(not/a/domain) = %d pairs, %v; want 0, ErrNotFound", n, err)
	}
}

func TestLogDrops(t *testing.T) {
	t.Run("queue full", func(t *testing.T) {
		db, reg := open(t, Options{LogOptions: LogOptions{QueueSize: 2, BatchSize: 1, FlushInterval: time.Hour}})
		// Hold the writer inside its first write so the queue cannot drain.
		db.mu.Lock()
		mustLog(t, db, Pair{Domain: "d", Input: "0"})
		for deadline := time.Now().Add(5 * time.Second); len(db.q.Items()) > 0; {
			if time.Now().After(deadline) {
				t.Fatal("writer did not take the first pair")
			}
			time.Sleep(time.Millisecond)
		}
		// The pair the writer holds counts: QueueSize bounds what is
		// accepted and not yet written, wherever it waits.
		ok := db.Log(Pair{Domain: "d", Input: "1"})
		if db.Log(Pair{Domain: "d", Input: "2"}) {
			t.Error("Log on a full queue returned true")
		}
		if got := db.QueueLen(); !ok || got != 2 {
			t.Errorf("QueueLen = %d (second pair accepted: %v), want 2", got, ok)
		}
		if got := metric(t, reg, "understudy_storage_queue_length"); got != 2 {
			t.Errorf("queue_length = %v, want 2", got)
		}
		db.mu.Unlock()
		flush(t, db)
		if got := len(allPairs(t, db, "d")); got != 2 {
			t.Errorf("stored %d pairs, want 2", got)
		}
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"understudy_storage_pairs_dropped_total", []string{"reason", "queue_full"}, 1},
			{"understudy_storage_pairs_dropped_total", []string{"reason", "closed"}, 0},
			{"understudy_storage_pairs_logged_total", nil, 2},
			{"understudy_storage_write_batches_total", nil, 2},
			{"understudy_storage_queue_length", nil, 0},
		} {
			if got := metric(t, reg, c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	})
	t.Run("queue bytes", func(t *testing.T) {
		big := strings.Repeat("x", 600<<10)
		db, reg := open(t, Options{LogOptions: LogOptions{QueueBytes: 1 << 20, BatchSize: 1, FlushInterval: time.Hour}})
		db.mu.Lock()                                  // hold the writer: nothing leaves the queue
		mustLog(t, db, Pair{Domain: "d", Input: big}) // alone: accepted whatever its size
		if db.Log(Pair{Domain: "d", Input: big}) {
			t.Error("Log beyond queue_bytes returned true")
		}
		mustLog(t, db, Pair{Domain: "d", Input: "small"}) // still fits
		db.mu.Unlock()
		flush(t, db)
		mustLog(t, db, Pair{Domain: "d", Input: big}) // written pairs free their bytes
		flush(t, db)
		if got := len(allPairs(t, db, "d")); got != 3 {
			t.Errorf("stored %d pairs, want 3", got)
		}
		if got := metric(t, reg, "understudy_storage_pairs_dropped_total", "reason", "queue_full"); got != 1 {
			t.Errorf("dropped{queue_full} = %v, want 1", got)
		}
		if got := db.q.bytes.Load(); got != 0 {
			t.Errorf("%d bytes still counted as queued after Flush", got)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		db, reg := open(t, Options{})
		for _, p := range []Pair{
			{Domain: ""}, {Domain: "a/b"}, {Domain: strings.Repeat("x", 65)}, {Domain: "sp am"},
			{Domain: "ok", ID: "not-a-ulid"},
		} {
			if db.Log(p) {
				t.Errorf("Log(%+v) = true, want false", p)
			}
		}
		if got := metric(t, reg, "understudy_storage_pairs_dropped_total", "reason", "invalid"); got != 5 {
			t.Errorf("dropped{invalid} = %v, want 5", got)
		}
	})
	t.Run("duplicate ID", func(t *testing.T) {
		db, reg := open(t, Options{})
		id := ulid.Make().String()
		mustLog(t, db, Pair{ID: id, Domain: "d", Input: "first", Label: "a"}, Pair{ID: id, Domain: "d", Input: "same batch", Label: "b"})
		flush(t, db)
		mustLog(t, db, Pair{ID: id, Domain: "d", Input: "later batch", Label: "b"}, Pair{Domain: "d", Input: "other", Label: "b"})
		flush(t, db)
		ps := allPairs(t, db, "d")
		if len(ps) != 2 || ps[0].ID != id || ps[0].Input != "first" {
			t.Errorf("stored %+v, want the first pair with ID %s and one other", ps, id)
		}
		checkCounts(t, db, "d")
		if got := metric(t, reg, "understudy_storage_pairs_dropped_total", "reason", "duplicate"); got != 2 {
			t.Errorf("dropped{duplicate} = %v, want 2", got)
		}
		if got := metric(t, reg, "understudy_storage_pairs_logged_total"); got != 2 {
			t.Errorf("pairs_logged_total = %v, want 2", got)
		}
	})
	t.Run("closed", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		db, err := Open(Options{Dir: t.TempDir(), Logger: quietLogger(), Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		if db.Log(Pair{Domain: "d"}) {
			t.Error("Log after Close returned true")
		}
		if got := testCounter(db.q.Dropped("closed")); got != 1 {
			t.Errorf("dropped{closed} = %v, want 1", got)
		}
	})
}

func TestCloseDrains(t *testing.T) {
	const n = 5000
	dir := t.TempDir()
	// Nothing is written before Close: the batch size and interval are out of reach.
	db, err := Open(Options{Dir: dir, Logger: quietLogger(), LogOptions: LogOptions{BatchSize: 1 << 20, FlushInterval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		mustLog(t, db, Pair{Domain: []string{"a", "b"}[i%2], Input: fmt.Sprint(i), Label: fmt.Sprint(i % 7)})
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	t.Run("after close", func(t *testing.T) {
		if _, err := db.Domains(); !errors.Is(err, ErrClosed) {
			t.Errorf("Domains after Close = %v, want ErrClosed", err)
		}
		if err := db.Pairs(context.Background(), "a", func(Pair) error { return nil }); !errors.Is(err, ErrClosed) {
			t.Errorf("Pairs after Close = %v, want ErrClosed", err)
		}
		if err := db.RunRetention(); !errors.Is(err, ErrClosed) {
			t.Errorf("RunRetention after Close = %v, want ErrClosed", err)
		}
		if err := db.Flush(context.Background()); err != nil {
			t.Errorf("Flush after Close = %v, want nil (all written)", err)
		}
	})
	db2, _ := open(t, Options{Dir: dir})
	total := 0
	for _, d := range []string{"a", "b"} {
		total += len(allPairs(t, db2, d))
		checkCounts(t, db2, d)
	}
	if total != n {
		t.Errorf("after reopen %d pairs, want %d", total, n)
	}
}

// TestConcurrentLogAndRetention: loggers, retention passes and readers run
// together; afterwards every count equals what is stored.
func TestConcurrentLogAndRetention(t *testing.T) {
	db, _ := open(t, Options{LogOptions: LogOptions{MaxPairsPerDomain: 300, TTL: time.Hour, BatchSize: 64, FlushInterval: time.Millisecond}})
	var producers sync.WaitGroup
	for g := 0; g < 4; g++ {
		producers.Add(1)
		go func() {
			defer producers.Done()
			for i := 0; i < 1000; i++ {
				if i%50 == 0 {
					time.Sleep(15 * time.Millisecond) // log for ~300 ms, beside retention and readers
				}
				age := time.Duration(i%5) * 20 * time.Minute // some are past the TTL
				db.Log(Pair{Domain: fmt.Sprint("d", i%3), Time: time.Now().Add(-age), Input: fmt.Sprint(g, i), Label: fmt.Sprint(i % 4)})
			}
		}()
	}
	stopReaders := repeat(
		func() bool {
			if err := db.RunRetention(); err != nil {
				t.Error(err)
				return false
			}
			return true
		},
		func() bool {
			if _, err := db.Domains(); err != nil {
				t.Error(err)
				return false
			}
			return true
		})
	// Flush only after the last Log: a pair logged after Flush began may
	// still be on its way to Badger when the counts are checked.
	producers.Wait()
	flush(t, db)
	stopReaders()
	for i := 0; i < 3; i++ {
		checkCounts(t, db, fmt.Sprint("d", i))
	}
	if err := db.RunRetention(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		d := fmt.Sprint("d", i)
		checkCounts(t, db, d)
		for _, p := range allPairs(t, db, d) {
			if time.Since(p.Time) > time.Hour {
				t.Errorf("%s: pair of %v survived a 1h TTL", d, p.Time)
			}
		}
		if n := mustDomain(t, db, d).Pairs; n > 300 {
			t.Errorf("%s: %d pairs, cap 300", d, n)
		}
	}
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, Registry: reg, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: t.TempDir(), Registry: reg, Logger: quietLogger()}); err == nil {
		t.Error("second pair log on the same registry: want an error")
	}
	db.Close()
	// Close unregisters: the same registry can serve a reopened log.
	db, err = Open(Options{Dir: dir, Registry: reg, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func testCounter(c prometheus.Counter) float64 {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, _ := reg.Gather()
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}

// repeat runs each f over and over, each in a goroutine of its own, until
// it returns false or the returned stop is called; stop waits for them.
func repeat(fs ...func() bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if !f() {
					return
				}
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}
