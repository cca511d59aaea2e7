package router

import (
	"fmt"
	"sync"
	"testing"
)

func TestDomainLabels(t *testing.T) {
	l := NewDomainLabels(3)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); l.Label(fmt.Sprint("d", i)) }()
	}
	wg.Wait()
	named := 0
	for i := range 10 {
		d := fmt.Sprint("d", i)
		switch got := l.Label(d); got {
		case d:
			named++
			if !l.Named(d) {
				t.Errorf("%s has its own label but Named is false", d)
			}
		case OtherDomain:
		default:
			t.Errorf("Label(%s) = %q", d, got)
		}
	}
	if named != 3 {
		t.Errorf("%d domains named, want the limit 3", named)
	}
	if got := l.Label(""); got != NoDomain {
		t.Errorf("Label(\"\") = %q, want %q", got, NoDomain)
	}
}
