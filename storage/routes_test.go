package storage

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestRoutingRecords(t *testing.T) {
	dir := t.TempDir()
	db, _ := open(t, Options{Dir: dir})
	// A domain whose pairs are still queued has a record all the same.
	if err := db.PutRoutingRecord("spam", []byte(`{"state":"shadowing"}`)); err != nil {
		t.Fatal(err)
	}
	if err := db.PutRoutingRecord("spam", []byte(`{"state":"serving"}`)); err != nil {
		t.Fatal(err)
	}
	if err := db.PutRoutingRecord("tone", []byte(`{"state":"collecting"}`)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "a/b", "x y"} {
		if err := db.PutRoutingRecord(bad, []byte(`{}`)); !errors.Is(err, ErrNotFound) {
			t.Errorf("PutRoutingRecord(%q) = %v, want ErrNotFound", bad, err)
		}
	}
	want := map[string][]byte{"spam": []byte(`{"state":"serving"}`), "tone": []byte(`{"state":"collecting"}`)}
	check := func(t *testing.T, db *DB) {
		got, err := db.RoutingRecords()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("RoutingRecords() = %q, want %q", got, want)
		}
	}
	check(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, _ := open(t, Options{Dir: dir})
	check(t, db2)
}

// An earlier release kept the router's record in a domain setting, beside
// a copy of the state in the domain record: an upgrade moves it to its own
// key and keeps it, and the domain keeps its other settings.
func TestLegacyRoutingRecordMoves(t *testing.T) {
	dir := t.TempDir()
	db, _ := open(t, Options{Dir: dir})
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mustLog(t, db, Pair{Domain: "spam", Time: t0, Input: "x", Answer: "spam", Label: "spam"})
	mustLog(t, db, Pair{Domain: "tone", Time: t0, Input: "y", Answer: "calm", Label: "calm"})
	flush(t, db)
	record := `{"state":"serving","serving":3,"routes":{"student":7}}`
	old := map[string]domainRecord{
		"spam": {FirstSeen: t0, LastSeen: t0, Pairs: 1, Logged: 1, LegacyState: "serving",
			Settings: map[string]string{legacyRouterSetting: record, "trainer.logged_at_last_run": "1"}},
		"tone": {FirstSeen: t0, LastSeen: t0, Pairs: 1, Logged: 1, LegacyState: "collecting"},
	}
	for name, rec := range old {
		v, err := json.Marshal(&rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(domainKey(name), v) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2, _ := open(t, Options{Dir: dir})
	got, err := db2.RoutingRecords()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string][]byte{"spam": []byte(record)}; !reflect.DeepEqual(got, want) {
		t.Errorf("RoutingRecords() = %q, want %q", got, want)
	}
	d := mustDomain(t, db2, "spam")
	if want := map[string]string{"trainer.logged_at_last_run": "1"}; !reflect.DeepEqual(d.Settings, want) {
		t.Errorf("settings after the move = %v, want %v", d.Settings, want)
	}
	if d.Pairs != 1 || d.Logged != 1 {
		t.Errorf("counts after the move: %d pairs, %d logged; want 1, 1", d.Pairs, d.Logged)
	}
	err = db2.bdb.View(func(txn *badger.Txn) error {
		for name := range old {
			item, err := txn.Get(domainKey(name))
			if err != nil {
				return err
			}
			var rec domainRecord
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return err
			}
			if rec.LegacyState != "" {
				t.Errorf("%s still holds a state copy %q", name, rec.LegacyState)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
