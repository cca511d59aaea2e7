package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/student"
)

// Example is one training pair: the student's input and the teacher's
// answer, raw and normalized.
type Example struct {
	Text   string
	Label  string
	Answer string
	// deferred: logged from a serving student's deferral (storage.Pair).
	deferred bool
}

// Options configure a training run. Zero values mean the documented
// defaults (see DefaultOptions).
type Options struct {
	Featurizer student.FeaturizerConfig
	// Dim is the embedding width. Default 16.
	Dim int
	// Hidden is the width of an optional hidden layer. Default 0 (none).
	Hidden int
	// Batch is the number of examples per optimisation step. Default 64.
	Batch int
	// MaxEpochs bounds training. Default 30.
	MaxEpochs int
	// Patience stops training after this many epochs without a better
	// holdout loss. Default 3.
	Patience int
	Adam     AdamConfig
	// Folds is how many folds the pairs are dealt into, stratified by
	// label. Default 5. Each round fits a student on all folds but one and
	// stops early on the one left out, its holdout; the rounds' holdout
	// predictions calibrate the temperature and τ and give the reported
	// metrics.
	Folds int
	// HoldoutPairs is how many holdout predictions the rounds should gather:
	// training runs as many rounds as that takes, at least one and at most
	// Folds (when the pairs are few, every pair is held out once). Default
	// 2000.
	HoldoutPairs int
	// Target is the selective agreement τ must reach on the holdout set,
	// plus Margin. Defaults 0.95 and 0.01.
	Target, Margin float64
	// MinCovered is the fewest holdout examples τ may be chosen on.
	// Default 10.
	MinCovered int
	Rule       LabelRule
	// Normalizer is the one that labelled the examples (config's labels
	// section), which reads a structured answer's fields. Default: case
	// folded and a trailing period stripped, config's default.
	Normalizer *student.Normalizer
	// Threads for ONNX Runtime. Default 1, so serving keeps its cores.
	Threads int
	// UseCUDA trains on the CUDA execution provider when it is available.
	UseCUDA bool
	Seed    uint64
	Logger  *slog.Logger
}

// DefaultOptions are the options a zero Options means. Dim, Hidden,
// MaxEpochs, Threads and Target are the defaults of config's trainer.dim,
// trainer.hidden, trainer.max_epochs, trainer.threads and
// router.agreement_threshold.
func DefaultOptions() Options {
	return Options{
		Featurizer: student.DefaultFeaturizer(), Dim: 16, Batch: 64, MaxEpochs: 30, Patience: 3,
		Adam: DefaultAdam(), Folds: 5, HoldoutPairs: 2000, Target: 0.95, Margin: 0.01, MinCovered: 10,
		Rule: DefaultLabelRule(), Normalizer: &student.Normalizer{FoldCase: true, StripTrailingPeriod: true}, Threads: 1, Seed: 1,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Featurizer == (student.FeaturizerConfig{}) {
		o.Featurizer = d.Featurizer
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&o.Dim, d.Dim)
	setInt(&o.Batch, d.Batch)
	setInt(&o.MaxEpochs, d.MaxEpochs)
	setInt(&o.Patience, d.Patience)
	setInt(&o.MinCovered, d.MinCovered)
	setInt(&o.Folds, d.Folds)
	setInt(&o.HoldoutPairs, d.HoldoutPairs)
	setInt(&o.Threads, d.Threads)
	if o.Adam == (AdamConfig{}) {
		o.Adam = d.Adam
	}
	if o.Target == 0 {
		o.Target = d.Target
	}
	if o.Margin == 0 {
		o.Margin = d.Margin
	}
	if o.Rule == (LabelRule{}) {
		o.Rule = d.Rule
	}
	if o.Normalizer == nil {
		o.Normalizer = d.Normalizer
	}
	if o.Seed == 0 {
		o.Seed = d.Seed
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// OpenEndedError says a domain has no closed label space to learn.
type OpenEndedError struct{ Reason string }

func (e *OpenEndedError) Error() string { return "not distillable: " + e.Reason }

// ErrOpenEnded matches every *OpenEndedError with errors.Is.
var ErrOpenEnded = errors.New("not distillable")

func (e *OpenEndedError) Is(target error) bool { return target == ErrOpenEnded }

// Train trains a student on examples: label space, stratified folds,
// rounds of epochs of sparse-Adam steps through ONNX Runtime, each with
// early stopping on the loss of the fold it leaves out, then the student it
// returns, trained on every pair for the rounds' mean best epoch count;
// temperature scaling and the choice of τ on the rounds' predictions for
// the pairs they held out. The artifact has everything but Domain and
// Version set.
func Train(ctx context.Context, examples []Example, opts Options) (*student.Artifact, error) {
	opts = opts.withDefaults()
	began := time.Now()
	space, recs := buildLabelSpace(examples, opts.Rule, *opts.Normalizer)
	if space.OpenEnded {
		return nil, &OpenEndedError{Reason: space.Reason}
	}
	feat, err := student.NewFeaturizer(opts.Featurizer)
	if err != nil {
		return nil, err
	}
	data, classes := samples(examples, recs, &space, feat)
	if opts.Folds < 2 {
		return nil, fmt.Errorf("training: folds must be at least 2, got %d", opts.Folds)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x5eed))
	folds := deal(data, classes, opts.Folds, rng)
	rounds := min(opts.Folds, max(1, ceilDiv(opts.HoldoutPairs, len(folds[0]))))
	cfg := ModelConfig{Buckets: opts.Featurizer.Buckets(), Dim: opts.Dim, Hidden: opts.Hidden, Classes: len(space.Labels), Heads: space.Heads}
	ft, err := newFitter(cfg, opts)
	if err != nil {
		return nil, err
	}
	defer ft.Close()
	var (
		logits  [][]float32 // holdout predictions, from the round that held each out
		holdout []sample
		seen    int
		epochs  int // the rounds' best epoch counts, summed
	)
	for i := range rounds {
		var train []sample
		for j, f := range folds {
			if j != i {
				train = appendInSpace(train, f)
			}
		}
		if len(train) == 0 || len(appendInSpace(nil, folds[i])) == 0 {
			return nil, fmt.Errorf("training: %d pairs are too few to hold any out", len(examples))
		}
		r, err := ft.fit(ctx, cfg, opts, train, folds[i], classes, opts.MaxEpochs, rng)
		if err != nil {
			return nil, err
		}
		for _, s := range folds[i] {
			logits = append(logits, Forward(cfg, r.params, toInt64(s.ids)))
		}
		holdout = append(holdout, folds[i]...)
		seen, epochs = seen+r.seen, epochs+r.bestEpoch
	}
	epochs = max(1, int(math.Round(float64(epochs)/float64(rounds))))
	all := appendInSpace(nil, data)
	final, err := ft.fit(ctx, cfg, opts, all, nil, classes, epochs, rng)
	if err != nil {
		return nil, err
	}
	seen += final.seen
	trainTime := time.Since(began)

	temp := fitTemperature(cfg, logits, holdout)
	tau, cov, sel, acc := chooseTau(cfg, logits, holdout, temp, opts.Target+opts.Margin, opts.MinCovered)
	start := startTau(cfg, logits, holdout, temp, tau, cov)
	onnx, err := ExportInference(cfg, final.params, float32(temp))
	if err != nil {
		return nil, err
	}
	return &student.Artifact{
		CreatedAt:   time.Now().UTC(),
		Labels:      space.Labels,
		Surface:     space.Surface,
		Heads:       space.Heads,
		Order:       space.Order,
		Featurizer:  opts.Featurizer,
		Tau:         tau,
		StartTau:    start,
		Temperature: temp,
		Pairs:       len(examples),
		Device:      "cpu",
		ONNX:        onnx,
		Metrics: student.Metrics{
			Labels: len(space.Labels), TrainPairs: len(all), HoldoutPairs: len(holdout),
			HoldoutAccuracy: acc, Tau: tau, CoverageAtTau: cov, SelectiveAgreementAtTau: sel,
			Temperature: temp, Epochs: epochs, TrainSeconds: trainTime.Seconds(),
			ExamplesPerSecond: float64(seen) / trainTime.Seconds(), ModelBytes: len(onnx),
		},
	}, nil
}

// sample is a featurized example. Its class is its label's (of a
// structured answer, its whole record's, which stratifies the folds and
// weighs the loss), -1 outside the label space. A structured answer's
// targets are the classes its record sets (LabelSpace.encode), never nil
// in the space; a plain answer's target is its class, and targets nil.
// Its ids are int32 (buckets < 2^24) to halve a large training set's memory.
type sample struct {
	ids     []int32
	class   int
	targets []int32
}

// hits reports whether the sample's answer sets output class c.
func (s *sample) hits(c int) bool {
	if s.targets == nil {
		return c == s.class
	}
	return slices.Contains(s.targets, int32(c))
}

// samples featurizes the examples and places them in the space: a plain
// one by its label, a structured one by its record (recs[i], from
// buildLabelSpace). It returns them with the number of classes they are
// stratified by: labels, or distinct records in the space.
func samples(examples []Example, recs []*student.Record, space *LabelSpace, feat *student.Featurizer) ([]sample, int) {
	classOf := make(map[string]int, len(space.Labels))
	if space.Heads == nil {
		for i, l := range space.Labels {
			classOf[l] = i
		}
	}
	data := make([]sample, len(examples))
	var ids []int64
	for i, e := range examples {
		ids = feat.Featurize(ids[:0], e.Text)
		s := sample{ids: toInt32(ids), class: -1} // outside the space: never trained on, always a miss
		switch {
		case space.Heads == nil:
			if c, ok := classOf[e.Label]; ok {
				s.class = c
			}
		case recs[i] != nil:
			if t, ok := space.encode(recs[i]); ok {
				l := recs[i].Label()
				c, seen := classOf[l]
				if !seen {
					c = len(classOf)
					classOf[l] = c
				}
				s.class, s.targets = c, t
			}
		}
		data[i] = s
	}
	return data, len(classOf)
}

func toInt32(ids []int64) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

func toInt64(ids []int32) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out
}

// batchBuf is the reused int64 id rows of one batch.
type batchBuf struct {
	rows [][]int64
}

func newBatchBuf(batch, maxTokens int) *batchBuf {
	b := &batchBuf{rows: make([][]int64, batch)}
	for i := range b.rows {
		b.rows[i] = make([]int64, 0, maxTokens)
	}
	return b
}

func (b *batchBuf) fill(chunk []sample) [][]int64 {
	for i, s := range chunk {
		r := b.rows[i][:0]
		for _, id := range s.ids {
			r = append(r, int64(id))
		}
		b.rows[i] = r
	}
	return b.rows[:len(chunk)]
}

// deal deals data into k folds, stratified: the samples outside the label
// space, then each class's, shuffled and dealt in turn, so every fold
// holds about a k-th of each.
func deal(data []sample, classes, k int, rng *rand.Rand) [][]sample {
	byClass := make([][]sample, classes+1)
	for _, s := range data {
		byClass[s.class+1] = append(byClass[s.class+1], s)
	}
	folds := make([][]sample, k)
	n := 0
	for _, group := range byClass {
		rng.Shuffle(len(group), func(i, j int) { group[i], group[j] = group[j], group[i] })
		for _, s := range group {
			folds[n%k] = append(folds[n%k], s)
			n++
		}
	}
	return folds
}

// appendInSpace appends the samples of src inside the label space, the
// only ones a student trains on.
func appendInSpace(dst, src []sample) []sample {
	for _, s := range src {
		if s.class >= 0 {
			dst = append(dst, s)
		}
	}
	return dst
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// fitted is a fit's outcome.
type fitted struct {
	params    *Params
	bestEpoch int // the epoch params are from
	seen      int // examples stepped through
}

// fitter holds what every fit of one training run shares: the stepper,
// with its ONNX Runtime session and the parameters it updates, and the
// best epoch's copy. A run's fits (a round per held-out fold, then the
// final one) would otherwise each build a session and allocate the
// parameters, their Adam moments and a copy anew: about 400 MB of garbage
// per run at the default featurizer's size.
type fitter struct {
	stepper *Stepper
	best    *Params
}

func newFitter(cfg ModelConfig, opts Options) (*fitter, error) {
	stepper, err := NewStepper(cfg, opts.Adam, opts.Batch, opts.Featurizer.MaxTokens, NewParams(cfg, opts.Seed), opts.Threads)
	if err != nil {
		return nil, err
	}
	best := zeroParams(cfg)
	return &fitter{stepper: stepper, best: &best}, nil
}

func (ft *fitter) Close() error { return ft.stepper.Close() }

// fit trains a student from fresh parameters on train for at most
// maxEpochs. With a holdout it stops once the holdout loss has not
// improved for Patience epochs and returns the parameters of the best
// epoch; without one it runs maxEpochs and returns the last. The
// parameters returned are the fitter's: valid until its next fit.
func (ft *fitter) fit(ctx context.Context, cfg ModelConfig, opts Options, train, holdout []sample, classes, maxEpochs int, rng *rand.Rand) (fitted, error) {
	stepper := ft.stepper
	if err := stepper.Reset(opts.Seed); err != nil {
		return fitted{}, err
	}
	params := stepper.Params()

	weights := classWeights(train, classes)
	f := fitted{params: params}
	if holdout != nil {
		copyParams(ft.best, params)
		f.params = ft.best
	}
	bestLoss, stale := math.Inf(1), 0
	batch := newBatchBuf(opts.Batch, opts.Featurizer.MaxTokens)
	targets := make([][]int32, 0, opts.Batch)
	one := make([]int32, opts.Batch) // a plain sample's target
	ws := make([]float32, 0, opts.Batch)
	for epoch := 1; epoch <= maxEpochs; epoch++ {
		rng.Shuffle(len(train), func(i, j int) { train[i], train[j] = train[j], train[i] })
		var sum float64
		for start := 0; start < len(train); start += opts.Batch {
			if err := ctx.Err(); err != nil {
				return fitted{}, err
			}
			targets, ws = targets[:0], ws[:0]
			chunk := train[start:min(start+opts.Batch, len(train))]
			for i, s := range chunk {
				if s.targets == nil {
					one[i] = int32(s.class)
					targets = append(targets, one[i:i+1])
				} else {
					targets = append(targets, s.targets)
				}
				ws = append(ws, weights[s.class])
			}
			loss, err := stepper.Step(batch.fill(chunk), targets, ws)
			if err != nil {
				return fitted{}, fmt.Errorf("training step: %w", err)
			}
			sum += float64(loss) * float64(len(chunk))
			f.seen += len(chunk)
		}
		if holdout == nil {
			f.bestEpoch = epoch
			continue
		}
		hl := holdoutLoss(cfg, params, holdout, 1)
		opts.Logger.Debug("epoch", "epoch", epoch, "train_loss", sum/float64(len(train)), "holdout_loss", hl)
		if hl < bestLoss-1e-4 {
			bestLoss, stale, f.bestEpoch = hl, 0, epoch
			copyParams(f.params, params)
		} else if stale++; stale >= opts.Patience {
			break
		}
	}
	return f, nil
}

// classWeights weighs each class by N / (C · n_c), so every class carries
// the same total weight, capped at 10 so a handful of rare examples cannot
// dominate.
func classWeights(train []sample, classes int) []float32 {
	n := make([]int, classes)
	for _, s := range train {
		n[s.class]++
	}
	w := make([]float32, classes)
	for c := range w {
		if n[c] > 0 {
			w[c] = float32(min(10, float64(len(train))/(float64(classes)*float64(n[c]))))
		}
	}
	return w
}

// holdoutLoss is the mean cross-entropy on the in-space holdout samples at
// a temperature (of a structured answer, summed over its heads).
func holdoutLoss(cfg ModelConfig, p *Params, holdout []sample, temp float64) float64 {
	var sum float64
	n := 0
	for _, s := range holdout {
		if s.class < 0 {
			continue
		}
		sum += sampleNLL(cfg, Forward(cfg, p, toInt64(s.ids)), &s, temp)
		n++
	}
	return sum / float64(max(n, 1))
}

// sampleNLL is the loss of an in-space sample given its logits at a
// temperature: −log softmax(logits/temp)[class] for a plain answer; for a
// structured one, summed over the heads (see the derivation in graph.go).
func sampleNLL(cfg ModelConfig, logits []float32, s *sample, temp float64) float64 {
	if cfg.Heads == nil {
		return nll(logits, s.class, temp)
	}
	var sum float64
	for _, h := range cfg.Heads {
		if h.Tags { // Σ_c softplus(x_c) − Y_c·x_c
			for c := h.Start; c < h.End; c++ {
				sum += softplus(float64(logits[c]) / temp)
			}
		}
		for _, c := range s.targets {
			switch {
			case int(c) < h.Start || int(c) >= h.End:
			case h.Tags:
				sum -= float64(logits[c]) / temp
			default:
				sum += nll(logits[h.Start:h.End], int(c)-h.Start, temp)
			}
		}
	}
	return sum
}

// nll is -log softmax(logits/temp)[class].
func nll(logits []float32, class int, temp float64) float64 {
	mx := math.Inf(-1)
	for _, l := range logits {
		mx = math.Max(mx, float64(l)/temp)
	}
	var z float64
	for _, l := range logits {
		z += math.Exp(float64(l)/temp - mx)
	}
	return mx + math.Log(z) - float64(logits[class])/temp
}

// softplus is log(1 + eˣ), computed without overflow.
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// fitTemperature finds the temperature minimising the holdout NLL
// (temperature scaling), by golden-section search on log T in [1/20, 20].
// A structured answer's NLL is summed over its heads: one temperature
// serves them all.
func fitTemperature(cfg ModelConfig, logits [][]float32, holdout []sample) float64 {
	f := func(logT float64) float64 {
		t := math.Exp(logT)
		var sum float64
		for i := range holdout {
			if holdout[i].class >= 0 {
				sum += sampleNLL(cfg, logits[i], &holdout[i], t)
			}
		}
		return sum
	}
	a, b := math.Log(1.0/20), math.Log(20)
	const phi = 0.6180339887498949
	c, d := b-phi*(b-a), a+phi*(b-a)
	fc, fd := f(c), f(d)
	for range 60 {
		if fc < fd {
			b, d, fd = d, c, fc
			c = b - phi*(b-a)
			fc = f(c)
		} else {
			a, c, fc = c, d, fd
			d = a + phi*(b-a)
			fd = f(d)
		}
	}
	return math.Exp((a + b) / 2)
}

// judge scores the student's answer to a holdout sample, given its logits,
// at a temperature, as serving decodes it (student.Head): its confidence,
// the least confident head's (a softmax head's: its likeliest class's
// probability; a tags head's: its least sure yes/no, max(p, 1−p)), and
// whether it is the teacher's answer: every head right, never for a
// sample outside the space.
func judge(cfg ModelConfig, logits []float32, s *sample, temp float64) (conf float64, correct bool) {
	p := headProbs(cfg, logits, temp)
	conf, correct = 1, s.class >= 0
	for _, h := range cfg.heads() {
		if h.Tags {
			for c := h.Start; c < h.End; c++ {
				conf = min(conf, max(p[c], 1-p[c]))
				correct = correct && (p[c] >= 0.5) == s.hits(c)
			}
			continue
		}
		best := h.Start
		for c := h.Start; c < h.End; c++ {
			if p[c] > p[best] {
				best = c
			}
		}
		conf = min(conf, p[best])
		correct = correct && s.hits(best)
	}
	return conf, correct
}

// headProbs returns the output probabilities of logits at a temperature:
// a softmax over each softmax head's classes, a sigmoid for each tag; what
// the inference graph outputs.
func headProbs(cfg ModelConfig, logits []float32, temp float64) []float64 {
	p := make([]float64, len(logits))
	for _, sg := range cfg.segments() {
		if !sg.sigmoid {
			copy(p[sg.start:sg.end], softmax(logits[sg.start:sg.end], temp))
			continue
		}
		for c := sg.start; c < sg.end; c++ {
			p[c] = 1 / (1 + math.Exp(-float64(logits[c])/temp))
		}
	}
	return p
}

// chooseTau picks the lowest confidence threshold whose selective agreement
// on the holdout reaches need, among thresholds covering at least
// minCovered examples. Without one, τ is above 1: the student never
// answers. It also returns coverage and selective agreement at τ and the
// plain holdout accuracy. Confidence and agreement are judge's: of a
// structured answer, of the whole record.
func chooseTau(cfg ModelConfig, logits [][]float32, holdout []sample, temp, need float64, minCovered int) (tau, coverage, selective, accuracy float64) {
	type scored struct {
		conf    float64
		correct bool
	}
	s := make([]scored, len(holdout))
	right := 0
	for i := range holdout {
		s[i].conf, s[i].correct = judge(cfg, logits[i], &holdout[i], temp)
		if s[i].correct {
			right++
		}
	}
	accuracy = float64(right) / float64(len(holdout))
	sort.Slice(s, func(i, j int) bool { return s[i].conf > s[j].conf })
	tau = math.Nextafter(1, 2) // never confident
	correct := 0
	for i, x := range s {
		if x.correct {
			correct++
		}
		n := i + 1
		if i+1 < len(s) && s[i+1].conf == x.conf {
			continue // a threshold takes all ties
		}
		if n >= minCovered && float64(correct)/float64(n) >= need {
			tau, coverage, selective = x.conf, float64(n)/float64(len(s)), float64(correct)/float64(n)
		}
	}
	return tau, coverage, selective, accuracy
}

// startTau is where the gate's fixed sequence of thresholds starts: the
// highest τ of shadow.Thresholds whose holdout coverage is at least half the
// coverage at the holdout's τ, and no lower than the grid value at or below
// that τ. Starting at the top instead
// would wait for evidence at thresholds few answers reach; starting at the
// holdout's τ, chosen on a small holdout for an optimistic point estimate,
// would block the sequence at its first test when the live agreement there
// falls short (it did: 0.93–0.94 live at a τ the holdout put at 0.96). It
// is fixed before any live or back-tested sample, as the sequence needs.
func startTau(cfg ModelConfig, logits [][]float32, holdout []sample, temp, tau, coverage float64) float64 {
	if coverage <= 0 {
		return shadow.Thresholds[0]
	}
	confs := make([]float64, len(holdout))
	for i := range holdout {
		confs[i], _ = judge(cfg, logits[i], &holdout[i], temp)
	}
	for _, g := range shadow.Thresholds {
		n := 0
		for _, c := range confs {
			if c >= g {
				n++
			}
		}
		if float64(n)/float64(len(confs)) >= coverage/2 || g <= tau {
			return g
		}
	}
	return shadow.Thresholds[len(shadow.Thresholds)-1]
}

func softmax(logits []float32, temp float64) []float64 {
	p := make([]float64, len(logits))
	mx := math.Inf(-1)
	for _, l := range logits {
		mx = math.Max(mx, float64(l)/temp)
	}
	var z float64
	for i, l := range logits {
		p[i] = math.Exp(float64(l)/temp - mx)
		z += p[i]
	}
	for i := range p {
		p[i] /= z
	}
	return p
}

// copyParams makes dst hold src's values, reusing dst's slices.
func copyParams(dst, src *Params) {
	cp := func(d *[]float32, s []float32) {
		if s == nil {
			*d = nil
			return
		}
		*d = append((*d)[:0], s...)
	}
	cp(&dst.E, src.E)
	cp(&dst.W1, src.W1)
	cp(&dst.B1, src.B1)
	cp(&dst.W2, src.W2)
	cp(&dst.B2, src.B2)
}
