package storage

import (
	"bytes"
	"errors"
	"testing"
)

func TestStudents(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{7}, 3<<20) // artifacts are megabytes
	for v := 1; v <= 3; v++ {
		if err := db.PutStudent("spam", v, []byte(`{"v":`+string(rune('0'+v))+`}`), append(big, byte(v))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutStudent("spam.other", 1, []byte(`{}`), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteStudent("spam", 2); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(Options{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	vs, err := db.StudentVersions("spam")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Version != 1 || vs[1].Version != 3 || string(vs[1].Meta) != `{"v":3}` {
		t.Fatalf("versions %+v, want 1 and 3 with their metadata", vs)
	}
	a, err := db.StudentArtifact("spam", 3)
	if err != nil || len(a) != len(big)+1 || a[len(a)-1] != 3 {
		t.Fatalf("artifact v3: %d bytes, %v", len(a), err)
	}
	if _, err := db.StudentArtifact("spam", 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted version: err = %v, want ErrNotFound", err)
	}
	if err := db.PutStudent("bad/name", 1, nil, nil); err == nil {
		t.Error("invalid domain accepted")
	}
}
