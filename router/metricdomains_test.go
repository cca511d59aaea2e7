package router

import (
	"fmt"
	"sync"
	"testing"
)

func TestMetricDomains(t *testing.T) {
	l := NewMetricDomains(3)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); l.Name(fmt.Sprint("d", i)) }()
	}
	wg.Wait()
	named := 0
	for i := range 10 {
		d := fmt.Sprint("d", i)
		switch got := l.Name(d); got {
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
	if got := l.Name(""); got != NoDomain {
		t.Errorf("Label(\"\") = %q, want %q", got, NoDomain)
	}
}
