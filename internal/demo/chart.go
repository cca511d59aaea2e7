package demo

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart settings.
const (
	chartWindow     = 200 // a domain's requests the rolling figures cover
	chartMinStudent = 20  // fewest student answers in a window for an agreement point
	chartStep       = 10  // a point every chartStep requests of a domain
)

var (
	offloadColor   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	agreementColor = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	promotionColor = color.RGBA{R: 214, G: 39, B: 40, A: 255}
)

// writeChart draws one panel per domain, stacked: the rolling offload
// share and the rolling agreement of the student's answers with the data
// set, against the request index, with the promotion marked.
func writeChart(path string, r *Report) error {
	plots := make([][]*plot.Plot, len(r.Domains))
	for i, s := range r.Domains {
		p, err := domainPlot(s, r.Trace)
		if err != nil {
			return fmt.Errorf("drawing the chart of %s: %w", s.Domain, err)
		}
		plots[i] = []*plot.Plot{p}
	}
	img := vgimg.New(10*vg.Inch, vg.Length(len(plots))*3.5*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6),
		PadLeft: vg.Points(6), PadRight: vg.Points(12), PadY: vg.Points(12)}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing the chart: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the chart: %w", err)
	}
	return nil
}

// domainPlot is one domain's panel.
func domainPlot(s Summary, trace []Request) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s (%s)", s.Domain, s.State)
	if st := s.Structured; st != nil {
		p.Title.Text = fmt.Sprintf("%s (%s; JSON of schema %s, %d of %d valid)", s.Domain, s.State, st.Schema, st.Valid, st.Answers)
	}
	p.X.Label.Text = "request index (all domains)"
	p.Y.Label.Text = fmt.Sprintf("share, last %d requests", chartWindow)
	// Room above 1 for the legend, where no line goes.
	p.Y.Min, p.Y.Max = 0, 1.4
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 0.25}, {Value: 0.5, Label: "0.5"}, {Value: 0.75}, {Value: 1, Label: "1"}})
	p.X.Min, p.X.Max = 0, float64(len(trace))
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	p.Add(plotter.NewGrid())
	offload, agreement := rolling(s.Domain, trace)
	if err := addLine(p, offload, offloadColor, nil, "offload (student answers)"); err != nil {
		return nil, err
	}
	agrees := "student agrees with the data"
	if s.Structured != nil {
		agrees += " (every field)"
	}
	if err := addLine(p, agreement, agreementColor, nil, agrees); err != nil {
		return nil, err
	}
	if s.PromotedAtRequest != nil {
		x := float64(*s.PromotedAtRequest)
		mark := plotter.XYs{{X: x, Y: 0}, {X: x, Y: 1.05}}
		dashes := []vg.Length{vg.Points(4), vg.Points(3)}
		if err := addLine(p, mark, promotionColor, dashes, fmt.Sprintf("promoted v%d at request %d", s.PromotedVersion, *s.PromotedAtRequest)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// addLine adds a line with a legend entry; an empty line is skipped.
func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, dashes []vg.Length, legend string) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.LineStyle.Color, l.LineStyle.Width, l.LineStyle.Dashes = c, vg.Points(1.5), dashes
	p.Add(l)
	p.Legend.Add(legend, l)
	return nil
}

// rolling computes, over each window of chartWindow consecutive requests of
// a domain, the share answered by a student (offload) and the share of
// those student answers that equal the data set's label (agreement, only
// where the window holds at least chartMinStudent of them), each plotted at
// the index of the window's last request.
func rolling(domain string, trace []Request) (offload, agreement plotter.XYs) {
	var window []Request
	student, correct, seen := 0, 0, 0
	for _, r := range trace {
		if r.Domain != domain {
			continue
		}
		window = append(window, r)
		student, correct = student+b2i(isStudent(r.Route)), correct+b2i(isStudent(r.Route) && r.Correct)
		if len(window) > chartWindow {
			old := window[0]
			window = window[1:]
			student, correct = student-b2i(isStudent(old.Route)), correct-b2i(isStudent(old.Route) && old.Correct)
		}
		if seen++; seen%chartStep != 0 {
			continue
		}
		x := float64(r.Index)
		offload = append(offload, plotter.XY{X: x, Y: ratio(student, len(window))})
		if student >= chartMinStudent {
			agreement = append(agreement, plotter.XY{X: x, Y: ratio(correct, student)})
		}
	}
	return offload, agreement
}

// b2i is 1 for true.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
