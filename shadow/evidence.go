package shadow

import (
	"math"
	"slices"
)

// This file holds the statistics behind the gate: test martingales built by
// betting, in the sense of Waudby-Smith & Ramdas, "Estimating means of
// bounded random variables by betting" (JRSS B, 2024).
//
// Each confident sample gives X ∈ {0, 1}: 1 when the student agreed with the
// teacher. To test H0: p ≤ θ' (p the selective agreement) a gambler starts
// with wealth 1 and before each sample picks a stake λ_i ∈ [0, c/θ'] using
// only earlier samples (λ is predictable); its wealth is
//
//	M_t = Π_{i ≤ t} (1 + λ_i (X_i − θ')).
//
// Every factor is positive (λ_i θ' ≤ c < 1) and, when p ≤ θ', has conditional
// mean 1 + λ_i (p − θ') ≤ 1, so M is a nonnegative supermartingale with
// M_0 = 1. Ville's inequality then gives P(∃t: M_t ≥ 1/α) ≤ α: the test may
// be checked after every sample, forever, and still rejects a true H0 with
// probability at most α. A fixed-n interval re-checked after every sample
// has no such guarantee: the chance that it ever excludes the truth climbs
// toward 1 as the looks go on.
//
// Freezing a wealth once it reaches 1/α (betting 0 from then on) or
// dropping a vanishing one to 0 only lowers a supermartingale, so both keep
// the guarantee and bound the arithmetic.

const (
	// betCap is c: stakes stay below c/θ' (promotion side) or c/(1−θ')
	// (demotion side), so one sample can cost at most half the wealth.
	betCap = 0.5

	// priorMean and priorWeight smooth the plug-in mean of the promotion
	// side, as priorWeight pseudo-samples of agreement priorMean. A student
	// was trained to agree, so the gambler starts by staking the most it
	// may and lets the data talk it down. In gate_sim_test.go a student at
	// 0.98 passes within 600 samples in 96.7% of streams; with the
	// uninformative start (1/2, weight 1), in 94.0%. Any prior keeps
	// validity: it only shapes the stakes, which stay predictable.
	priorMean   = 1.0
	priorWeight = 50.0

	// vanishing is the wealth below which a martingale is set to 0.
	vanishing = 1e-200
)

// boundGrid returns the values θ' at which the bounds of one threshold τ
// are tested: coarse far from the gate's threshold, by 0.01 from 0.90 and
// by 0.005 above 0.98, and threshold itself, sorted and without repeats.
// Each τ of the grid of thresholds keeps both sides on it, so the bounds
// cost a few hundred bytes per τ; they are for display, and the promotion
// test is the one value at threshold.
func boundGrid(threshold float64) []float64 {
	g := []float64{0.5, 0.6, 0.7, 0.8, 0.85, 0.88}
	for k := 90; k <= 98; k++ {
		g = append(g, float64(k)/100)
	}
	g = append(g, 0.985, 0.99, 0.995)
	i, found := slices.BinarySearch(g, threshold)
	if found {
		return g
	}
	return slices.Insert(g, i, threshold)
}

// bounds is a confidence sequence for the selective agreement p, one betting
// martingale per grid value θ' on each side:
//
//   - lower[k] tests H0: p ≤ grid[k] with aGRAPA stakes
//     λ = clip((μ̂ − θ')/(σ̂² + (μ̂ − θ')²), 0, c/θ');
//   - upper[k] tests H0: p ≥ grid[k], the mirror image:
//     Π (1 + λ (θ' − X)), λ = clip((θ' − μ̂)/(σ̂² + (θ' − μ̂)²), 0, c/(1−θ')).
//
// μ̂ is the smoothed mean of the earlier samples and σ̂² = μ̂(1−μ̂), the
// Bernoulli variance. The running intersection of the sets of θ' not yet
// rejected gives the bounds: Lower is the largest θ' such that it and every
// grid value below it has been rejected at some time (0 if none), Upper the
// smallest θ' such that it and every value above has been (1 if none). If
// Lower ≥ p, the smallest grid value at or above p, whose H0 is true, was
// rejected once: by Ville's inequality that happens with probability at most
// α, so P(∃t: Lower_t ≥ p) ≤ α, and likewise P(∃t: Upper_t ≤ p) ≤ α. The
// bounds hold at any stopping time; each is one-sided at level α, so
// together they cover p with probability at least 1 − 2α. The lower one
// uses about all of its α: a martingale that keeps betting at p = θ' ends
// either at 1/α or near 0, so Ville's inequality is close to equality.
//
// Rejected martingales stop betting and so do those whose stake is 0 (θ' at
// or beyond μ̂ on its side), so one sample touches only the grid values
// between the bounds and μ̂: a few dozen once the mean has settled.
//
// The grid point at the gate's threshold is the promotion test.
type bounds struct {
	grid         []float64
	lower, upper []float64
	lo           int   // first index of lower not rejected; len(grid) if all are
	hi           int   // last index of upper not rejected; -1 if all are
	n, s         int64 // samples and agreements since the start
}

// newBounds returns bounds on grid g (boundGrid's; it is shared, not
// copied).
func newBounds(g []float64) bounds {
	b := bounds{grid: g, lower: make([]float64, len(g)), upper: make([]float64, len(g))}
	b.reset()
	return b
}

// reset starts every martingale afresh.
func (b *bounds) reset() {
	for k := range b.grid {
		b.lower[k], b.upper[k] = 1, 1
	}
	b.lo, b.hi = 0, len(b.grid)-1
	b.n, b.s = 0, 0
}

// estimate returns the plug-in mean and variance from the samples so far.
func (b *bounds) estimate() (mu, v float64) {
	mu = (priorWeight*priorMean + float64(b.s)) / (priorWeight + float64(b.n))
	return mu, mu * (1 - mu)
}

// add bets every live martingale on one sample. reject is 1/α.
func (b *bounds) add(agree bool, reject float64) {
	mu, v := b.estimate()
	x := 0.0
	if agree {
		x = 1
	}
	g, lower, upper := b.grid, b.lower, b.upper
	for k := b.lo; k < len(g); k++ {
		t := g[k]
		if t >= mu {
			break
		}
		m := lower[k]
		if m >= reject || m == 0 {
			continue
		}
		d := mu - t
		lam := min(d/(v+d*d), betCap/t)
		if m *= 1 + lam*(x-t); m < vanishing {
			m = 0
		}
		lower[k] = m
	}
	for k := b.hi; k >= 0; k-- {
		t := g[k]
		if t <= mu {
			break
		}
		m := upper[k]
		if m >= reject || m == 0 {
			continue
		}
		d := t - mu
		lam := d / (v + d*d)
		if t < 1 {
			lam = min(lam, betCap/(1-t))
		}
		if m *= 1 + lam*(t-x); m < vanishing {
			m = 0
		}
		upper[k] = m
	}
	b.n++
	if agree {
		b.s++
	}
	b.settle(reject)
}

// settle moves lo and hi past the martingales that have reached reject.
func (b *bounds) settle(reject float64) {
	for b.lo < len(b.grid) && b.lower[b.lo] >= reject {
		b.lo++
	}
	for b.hi >= 0 && b.upper[b.hi] >= reject {
		b.hi--
	}
}

// lowerBound and upperBound are the running-intersection bounds.
func (b *bounds) lowerBound() float64 {
	if b.lo == 0 {
		return 0
	}
	return b.grid[b.lo-1]
}

func (b *bounds) upperBound() float64 {
	if b.hi == len(b.grid)-1 {
		return 1
	}
	return b.grid[b.hi+1]
}

// Demotion.
//
// After promotion the tracker tests H0: p ≥ θ with the mirror martingale
//
//	E_t = Π (1 + λ_i (θ − X_i)),  0 ≤ λ_i ≤ c/(1−θ),
//
// started at 1 when MarkPromoted is called; Ville's inequality bounds the
// chance that a student whose agreement stays at or above θ is ever demoted
// by α (Gate.DemotionConfidence = 1 − α). Validity holds for any
// predictable stakes; they are chosen for power against a drift that comes
// after many samples at high agreement, where betting against the student
// costs wealth that must later be won back.
//
// The gambler bets the fraction κ = 0.6 of the Kelly stake against its own
// prediction of the next sample. For Bernoulli samples the Kelly stake
// against a predicted agreement p̄ < θ is (θ − p̄)/(θ(1−θ)), which maximises
// E log(1 + λ(θ − X)); a fraction of it reaches 1/α more surely within a
// bounded horizon. The prediction mixes two hypotheses,
//
//	p̄ = (1 − π) p₀ + π p₁,
//
// where p₀ is the student's agreement so far (the smoothed all-time mean,
// clamped to [1 − (1−θ)/2, 1 − (1−θ)/10]), p₁ = 1 − 3(1−θ) a drifted
// agreement (the disagreement rate tripled; 0.85 for θ = 0.95), and π the
// posterior probability that a drift from p₀ to p₁ has happened, under a
// prior that it comes at any sample with probability ρ = 0.002:
// π = ρR/(1 + ρR), R the Shiryaev–Roberts statistic
//
//	R_i = (1 + R_{i−1}) · P₁(X_i)/P₀(X_i),  R_0 = 0.
//
// While the student agrees as it did, π is tiny, p̄ ≈ p₀ > θ and the stake
// is 0; a run of disagreements raises π until p̄ < θ, and the stake grows
// with the evidence of a drift. The tracker keeps log(1 + R), which is 0 at
// the start and never overflows.
//
// In the simulations of gate_sim_test.go (θ = 0.95, 300–1000 samples at
// 0.98, then 0.85) this demotes within 150 samples of the drop in about 97%
// of streams at α = 0.15 (the default, see Gate.DemotionConfidence), 95.5%
// at α = 0.10 and 93% at α = 0.05. Earlier stakes — the Kelly fraction
// switched on by a logistic of a CUSUM — reached 94% at α = 0.10 and 90.5%
// at 0.05; plug-in stakes from the mean of the last 30–50 samples, 79–88%
// at 0.05. κ and ρ were tuned on those simulations (κ 0.4–0.9, ρ 0.001–
// 0.005, p₁ 0.83–0.87 all land within 2 points). A test told exactly when
// the drop happens reaches 98% at α = 0.05: what remains is the time needed
// to notice the drop.
const (
	driftKelly  = 0.6
	driftHazard = 0.002
)

// drift is the demotion test and its change statistic. The statistic runs
// on every confident sample so that it is warm when a student is promoted.
type drift struct {
	logE   float64 // log of the test martingale; 0 until promoted
	change float64 // log(1 + R), R the Shiryaev–Roberts statistic
}

// driftParams are the constants of the demotion test for a threshold.
type driftParams struct {
	theta   float64 // θ, kept below 1 so the stakes stay finite
	p1      float64 // the drifted agreement looked for
	maxBet  float64 // c/(1−θ)
	p0Lo    float64 // clamp of the baseline agreement
	p0Hi    float64
	logPass float64 // log(1/α)
}

func newDriftParams(threshold, alpha float64) driftParams {
	// H0: p ≥ 1 − 1e-6 contains H0: p ≥ 1, so rejecting it rejects p ≥ 1.
	theta := min(threshold, 1-1e-6)
	q := 1 - theta
	return driftParams{
		theta:   theta,
		p1:      max(1-3*q, theta/2),
		maxBet:  betCap / q,
		p0Lo:    1 - q/2,
		p0Hi:    1 - q/10,
		logPass: -math.Log(alpha),
	}
}

// stake is λ for the next sample, from the change statistic and p0.
func (d *drift) stake(p0 float64, dp *driftParams) float64 {
	odds := driftHazard * math.Expm1(d.change) // ρR
	pi := odds / (1 + odds)
	if math.IsInf(odds, 1) {
		pi = 1
	}
	pbar := (1-pi)*p0 + pi*dp.p1
	if pbar >= dp.theta {
		return 0
	}
	return min(driftKelly*(dp.theta-pbar)/(dp.theta*(1-dp.theta)), dp.maxBet)
}

// add updates the test, when betting, and the change statistic with one
// sample. p0 is the baseline agreement estimated from earlier samples.
func (d *drift) add(agree, betting bool, p0 float64, dp *driftParams) {
	p0 = min(max(p0, dp.p0Lo), dp.p0Hi)
	x, lr := 0.0, (1-dp.p1)/(1-p0)
	if agree {
		x, lr = 1, dp.p1/p0
	}
	if betting {
		d.logE += math.Log1p(d.stake(p0, dp) * (dp.theta - x))
	}
	// log(1 + R_i) = softplus(log(1 + R_{i−1}) + log LR_i).
	z := d.change + math.Log(lr)
	if z > 30 {
		d.change = z + math.Log1p(math.Exp(-z))
	} else {
		d.change = math.Log1p(math.Exp(z))
	}
}
