package shadow

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/student"
)

// Predictor is the part of a student model the pool uses.
type Predictor interface {
	PredictBatch(texts []string) ([]student.Prediction, error)
}

var _ Predictor = (*student.Model)(nil)

// Job asks the pool to score a student version on one teacher answer.
type Job struct {
	// Uniform: the teacher was asked whatever any student's confidence
	// (Sample.Uniform). While another version serves, the teacher answers
	// mostly what it was unsure of: those answers are not uniform.
	Uniform bool
	Domain  string
	Version int
	Model   Predictor
	Input   string
	// Label is the teacher's normalized answer.
	Label string
	// Sink receives the sample.
	Sink Sink
}

// Sink receives a scored sample.
type Sink func(domain string, version int, s Sample)

// SampleOf scores a student's prediction against the teacher's label. The
// caller says whether the request was scored whatever the confidence
// (Sample.Uniform). When the teacher's label is a record's, the sample
// compares the two field by field too (Sample.Fields).
func SampleOf(p student.Prediction, teacher string, uniform bool) Sample {
	return Sample{Confidence: p.Confidence, Agree: p.Label == teacher, Uniform: uniform, Teacher: teacher, Student: p.Label,
		Fields: fieldSamples(p, teacher)}
}

// PoolConfig sizes the pool. A zero or negative field means its default
// (DefaultPoolConfig).
type PoolConfig struct {
	// QueueSize bounds waiting jobs; a full queue drops. Default 4096.
	QueueSize int
	// Workers score in parallel. Default 1.
	Workers int
	// Batch is the most jobs predicted in one call. Default 32.
	Batch int
	// Linger is how long a worker that has taken a job waits for more
	// before it predicts, unless Batch jobs come first. Default 100ms.
	//
	// Scoring is not on any request's path, so a sample may wait; a
	// worker woken for every job would instead cost a thread wake-up per
	// teacher answer, which at 1,000 req/s took more CPU than the
	// predictions themselves.
	Linger time.Duration
}

// DefaultPoolConfig is the pool a zero PoolConfig means: QueueSize and
// Workers are the defaults of config's router.shadow_queue_size and
// router.shadow_workers.
func DefaultPoolConfig() PoolConfig {
	return PoolConfig{QueueSize: 4096, Workers: 1, Batch: 32, Linger: 100 * time.Millisecond}
}

// Pool scores students in the shadow of the teacher: a bounded queue and
// fixed workers that batch predictions per model and hand each sample to
// its job's sink. It never blocks the caller: Submit drops (and counts)
// when the queue is full.
type Pool struct {
	cfg   PoolConfig
	queue chan Job
	full  chan struct{} // a batch is waiting: wakes a lingering worker

	dropped  prometheus.Counter
	predTime prometheus.Histogram
	cpu      prometheus.Counter

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

// PoolDeps are the pool's collaborators.
type PoolDeps struct {
	// Registry receives the pool's metrics; nil registers none.
	Registry prometheus.Registerer
}

// NewPool builds a pool.
func NewPool(cfg PoolConfig, deps PoolDeps) *Pool {
	d := DefaultPoolConfig()
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = d.QueueSize
	}
	if cfg.Workers <= 0 {
		cfg.Workers = d.Workers
	}
	if cfg.Batch <= 0 {
		cfg.Batch = d.Batch
	}
	if cfg.Linger <= 0 {
		cfg.Linger = d.Linger
	}
	p := &Pool{cfg: cfg, queue: make(chan Job, cfg.QueueSize), full: make(chan struct{}, 1), done: make(chan struct{}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "shadow", Name: "dropped_total",
			Help: "Shadow scoring jobs dropped because the queue was full.",
		}),
		predTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "understudy", Subsystem: "shadow", Name: "batch_prediction_seconds",
			Help:    "Duration of one batched student prediction in the shadow pool.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1},
		}),
		cpu: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "shadow", Name: "cpu_seconds_total",
			Help: "CPU time the shadow pool's workers spent scoring: featurizing, predicting and recording the samples (Linux only).",
		}),
	}
	if reg := deps.Registry; reg != nil {
		reg.MustRegister(p.dropped, p.predTime, p.cpu,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "understudy", Subsystem: "shadow", Name: "queue_length",
				Help: "Shadow scoring jobs waiting.",
			}, func() float64 { return float64(len(p.queue)) }))
	}
	return p
}

// Submit queues a job; false when it was dropped.
func (p *Pool) Submit(j Job) bool {
	select {
	case <-p.done:
		return false
	default:
	}
	select {
	case p.queue <- j:
		if len(p.queue) >= p.cfg.Batch {
			select {
			case p.full <- struct{}{}:
			default:
			}
		}
		return true
	default:
		p.dropped.Inc()
		return false
	}
}

// Run starts the workers and waits until ctx is done; the jobs still
// queued are then dropped.
func (p *Pool) Run(ctx context.Context) error {
	for range p.cfg.Workers {
		p.wg.Add(1)
		go p.work(ctx)
	}
	<-ctx.Done()
	p.Close()
	p.wg.Wait()
	return nil
}

// Close stops accepting jobs. It is safe to call twice.
func (p *Pool) Close() {
	p.closeOnce.Do(func() { close(p.done) })
}

func (p *Pool) work(ctx context.Context) {
	defer p.wg.Done()
	// A worker keeps its thread, so the thread's CPU clock is the
	// scoring's own cost: what the shadow adds over the teacher alone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	batch := make([]Job, 0, p.cfg.Batch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case j := <-p.queue:
			batch = append(batch, j)
		}
		// Wait for more on a timer, not on the queue: a worker waiting on
		// the queue would be woken by every Submit. Submit signals full
		// when a batch is waiting.
		if len(p.queue) < p.cfg.Batch-1 {
			linger.Reset(p.cfg.Linger)
			select {
			case <-linger.C:
			case <-p.full:
				linger.Stop()
			case <-ctx.Done():
				linger.Stop()
				return
			}
		}
	fill:
		for len(batch) < p.cfg.Batch {
			select {
			case j := <-p.queue:
				batch = append(batch, j)
			default:
				break fill
			}
		}
		began, ok := threadCPU()
		p.score(batch)
		if ended, ok2 := threadCPU(); ok && ok2 {
			p.cpu.Add(float64(ended-began) / 1e9)
		}
	}
}

// score predicts each model's jobs in one call and sends the samples on.
func (p *Pool) score(batch []Job) {
	for len(batch) > 0 {
		m := batch[0].Model
		var same, rest []Job
		for _, j := range batch {
			if j.Model == m {
				same = append(same, j)
			} else {
				rest = append(rest, j)
			}
		}
		texts := make([]string, len(same))
		for i, j := range same {
			texts[i] = j.Input
		}
		began := time.Now()
		preds, err := m.PredictBatch(texts)
		p.predTime.Observe(time.Since(began).Seconds())
		if err == nil {
			for i, j := range same {
				j.Sink(j.Domain, j.Version, SampleOf(preds[i], j.Label, j.Uniform))
			}
		}
		batch = rest
	}
}
