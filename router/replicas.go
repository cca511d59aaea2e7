package router

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
)

// Several replicas (Deps.Replicas set) share the routing state this way.
// One of them at a time, the learner, holds the storage.Lease: its router
// leads (Lead), runs the gate on the samples of every replica and writes
// the routing records, as a single gateway's does. Every other router
// follows (Follow): it applies each record the learner stores — loading
// the artifacts of the versions it names, retiring those it no longer
// names, restoring their evidence from the record's snapshots — so that
// it answers with the same serving version at the same τ; it scores
// candidates in the shadow of its own teacher answers and publishes every
// sample (its serving version's too) on the bus instead of adding it to
// its gate. A follower writes no record and takes no operator action
// (ErrNotLeader); its admin views show the learner's last stored record,
// and its route counts are its own since it started, which the admin API
// sums over the live replicas.
//
// When the lease changes hands the new learner first applies every
// stored record — the evidence as of the previous learner's last save
// (PersistEvery samples, and every transition) — then counts the samples
// published from then on. Samples scored between that save and the
// takeover are not counted: the gate's tests stay valid on any subset of
// samples chosen without looking at them.
//
// A learner can be deposed without knowing it (paused past its lease):
// the store then refuses its record writes (storage.ErrFenced, see
// storage.RoutingRecords). Its router steps down at the first refusal
// (stepDown): it stops running the gate and writing, drops the records
// it had not written, and applies the stored ones, so that it answers as
// the learner decided and not as its refused records said; the lease loop
// decides again who leads. When a term ends for any reason the router
// applies the stored records too.

// Leading reports whether this router runs the gate and writes the
// routing records: always for a single gateway, the lease holder's among
// replicas.
func (r *Router) Leading() bool { return r.leading.Load() }

// wireSample is a sample on the bus.
type wireSample struct {
	Domain  string        `json:"d"`
	Version int           `json:"v"`
	Sample  shadow.Sample `json:"s"`
}

// publish hands a follower's sample to the learner. It never blocks.
func (r *Router) publish(name string, v int, s shadow.Sample) {
	b, err := json.Marshal(wireSample{Domain: name, Version: v, Sample: s})
	if err == nil {
		r.deps.Replicas.PublishSample(b) // counts its drops
	}
}

// Lead runs the gate of every replica while ctx lasts: the term of the
// learner lease (storage.Lease.Lead calls it). It applies the stored
// records, then adds the samples the followers publish to the gate, as
// its own; when ctx ends this router follows again. A single gateway's
// router always leads: Lead then only waits for ctx.
func (r *Router) Lead(ctx context.Context) error {
	if r.deps.Replicas == nil {
		<-ctx.Done()
		return nil
	}
	// Listen first: a sample published after the records were read is
	// not missed.
	samples, err := r.deps.Replicas.Samples(ctx)
	if err != nil {
		r.log.Error("leading: the followers' samples will not count", "err", err)
	}
	select {
	case <-r.deposed: // a refusal of a past term
	default:
	}
	r.followMu.Lock()
	if stored, err := r.deps.Store.RoutingRecords(); err != nil {
		r.log.Error("leading: reading the stored routing records; going on with those last followed", "err", err)
	} else {
		for name, b := range stored {
			r.follow(name, b)
		}
	}
	r.leading.Store(true)
	r.followMu.Unlock()
	r.log.Info("leading: this replica runs the gate on the samples of every replica")
	defer func() {
		// Write what changed while the lease is still held: a clean stop
		// releases it only once Lead returned.
		r.Flush()
		r.followMu.Lock()
		r.leading.Store(false)
		r.followMu.Unlock()
		r.resync()
		r.log.Info("following: another replica runs the gate")
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.deposed:
			<-ctx.Done() // the lease ends the term
			return nil
		case b, ok := <-samples:
			if !ok || !r.leading.Load() {
				<-ctx.Done()
				return nil
			}
			var w wireSample
			if json.Unmarshal(b, &w) != nil {
				continue
			}
			r.mu.RLock()
			d := r.domains[w.Domain]
			r.mu.RUnlock()
			if d == nil {
				continue // a domain this router has no version of
			}
			d.mu.Lock()
			r.observe(d, w.Version, w.Sample)
			d.mu.Unlock()
		}
	}
}

// stepDown stops leading at once: the store refused a record write
// because another replica took the lease. The saver calls it; Lead then
// waits for its term to end.
func (r *Router) stepDown() {
	r.followMu.Lock()
	was := r.leading.Swap(false)
	r.followMu.Unlock()
	if !was {
		return
	}
	r.log.Warn("stepping down: another replica took the learner lease and this one's records were refused")
	select {
	case r.deposed <- struct{}{}:
	default:
	}
	r.resync()
}

// resync applies the stored records while this router follows: what it
// changed as the learner and could not store gives way to what the
// learner stored. A domain with no stored record goes back to collecting.
//
// It holds followMu from the read to the last apply: a record the watch
// delivers meanwhile waits, and is applied after the older copy read
// here, not before it.
func (r *Router) resync() {
	r.followMu.Lock()
	defer r.followMu.Unlock()
	if r.leading.Load() {
		return // a new term began and read them itself
	}
	stored, err := r.deps.Store.RoutingRecords()
	if err != nil {
		r.log.Error("following: reading the stored routing records; going on with this replica's", "err", err)
		return
	}
	r.mu.RLock()
	var known []*domain
	for name, d := range r.domains {
		if _, ok := stored[name]; !ok {
			known = append(known, d)
		}
	}
	r.mu.RUnlock()
	var unstored []string
	for _, d := range known {
		d.mu.Lock()
		if d.rec.State != Collecting || d.serving != nil || len(d.candidates) > 0 {
			unstored = append(unstored, d.name)
		}
		d.mu.Unlock()
	}
	for name, b := range stored {
		r.follow(name, b)
	}
	for _, name := range unstored {
		r.follow(name, []byte("{}"))
	}
}

// Follow applies the routing records every replica stores, as they are
// stored, while this router does not lead, until ctx ends. A single
// gateway's router has none to follow: Follow then only waits for ctx.
func (r *Router) Follow(ctx context.Context) error {
	if r.deps.Replicas == nil {
		<-ctx.Done()
		return nil
	}
	for ctx.Err() == nil {
		changes, err := r.deps.Replicas.WatchRoutingRecords(ctx)
		if err != nil {
			r.log.Error("following the routing records; trying again", "err", err)
			t := time.NewTimer(time.Second)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			continue
		}
		for c := range changes {
			r.followMu.Lock()
			if !r.leading.Load() {
				r.follow(c.Domain, c.Record)
			}
			r.followMu.Unlock()
		}
	}
	return nil
}

// follow makes a domain's state the stored record's. r.followMu must be
// held. It loads the artifacts it lacks before it takes the domain's lock,
// so requests are not held up by the reads.
func (r *Router) follow(name string, b []byte) {
	if b == nil || !storage.ValidDomain(name) {
		return
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		r.log.Error("following the routing record", "domain", name, "err", err)
		return
	}
	if len(rec.Candidates) == 0 && rec.Candidate != 0 {
		rec.Candidates = []int{rec.Candidate}
	}
	rec.Candidate = 0
	d := r.get(name)
	d.mu.Lock()
	have := map[int]*version{}
	for _, v := range append([]*version{d.serving}, d.candidates...) {
		if v != nil {
			have[v.n] = v
		}
	}
	d.mu.Unlock()
	models := map[int]*student.Model{}
	for _, v := range append([]int{rec.Serving}, rec.Candidates...) {
		if v == 0 || models[v] != nil {
			continue
		}
		if h := have[v]; h != nil {
			models[v] = h.model
			continue
		}
		m, err := r.load(name, v)
		if err != nil {
			r.log.Error("following: loading student", "domain", name, "version", v, "err", err)
			continue
		}
		models[v] = m
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	build := func(v int, promoted bool) *version {
		m := models[v]
		if m == nil {
			return nil
		}
		var sc Scores
		if snap, ok := rec.Scores[v]; ok {
			if t, err := shadow.RestoreTracker(r.cfg.Gate, snap); err == nil {
				sc = t
			}
		}
		if sc == nil && have[v] != nil {
			sc = have[v].scores
		}
		if sc == nil {
			t := shadow.NewTracker(r.cfg.Gate, startOf(m.Artifact))
			if promoted {
				t.MarkPromoted()
			}
			sc = t
		}
		ver := &version{n: v, model: m, scores: sc, tau: sc.Tau()}
		if t, ok := sc.(*shadow.Tracker); ok {
			ver.explore = t.Promising()
		}
		return ver
	}
	before := d.rec.Serving
	serving := build(rec.Serving, true)
	var candidates []*version
	for _, v := range rec.Candidates {
		if c := build(v, false); c != nil {
			candidates = append(candidates, c)
		}
	}
	kept := func(m *student.Model) bool {
		if serving != nil && serving.model == m {
			return true
		}
		return slices.ContainsFunc(candidates, func(c *version) bool { return c.model == m })
	}
	for _, old := range have {
		if !kept(old.model) {
			retire(old.model) // a request may still hold it
		}
	}
	routes := d.rec.Routes
	d.rec = rec
	d.rec.Routes = routes // this replica's own
	d.rec.Scores = nil
	d.serving, d.candidates = serving, candidates
	d.setCandidates()
	if d.rec.State == "" || d.rec.State == Serving && d.serving == nil || d.rec.State == Shadowing && len(d.candidates) == 0 {
		d.rec.State = Collecting
	}
	if d.rec.Serving = 0; d.serving != nil {
		d.rec.Serving = d.serving.n
	}
	if d.rec.Serving != before {
		r.log.Info("following the learner: serving version changed", "domain", name, "state", string(d.rec.State),
			"from", before, "to", d.rec.Serving)
	}
}
