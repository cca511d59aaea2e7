package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"sync"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/internal/openai"
)

// DomainResolver finds a request's task domain: the X-Understudy-Domain
// header, then metadata.task, then the first configured rule that matches,
// else an automatic name fingerprinting model and normalized system prompt.
//
// The shape of answer a request asks for is part of its domain, so that a
// student only answers requests of the shape it learned: an automatic name
// hashes it with the prompt, and a name given by header, task or rule has
// it as a suffix ("sentiment" for plain text, "sentiment.schema-1a2b3c4d"
// for a JSON schema, "sentiment.tools" when tools are offered; see
// shapeSuffix). A chat request and a Responses API request with the same
// model, prompt and shape share a domain.
//
// New automatic domains are bounded in rate and number (see admission,
// gateway.max_auto_domains and gateway.new_domains_per_minute). Named
// domains are not: a header, a metadata.task or a rule is an operator's
// (or an authenticated client's) deliberate choice, few by nature, and
// refusing one would silently stop learning a task someone named. They do
// not count toward max_auto_domains either, so naming tasks never crowds
// out automatic ones.
type DomainResolver struct {
	rules []domainRule
	// admit bounds new automatic domains; nil admits them all.
	admit *admission
	// autos caches automatic names by model and raw system prompt: a
	// client sends the same few prompts again and again, and hashing one
	// cost more than the rest of resolving. At most maxAutos are kept;
	// prompts beyond them are fingerprinted each time.
	autosMu sync.RWMutex
	autos   map[string]map[string]string
	nAutos  int
}

// maxAutos bounds the automatic names a DomainResolver caches.
const maxAutos = 4096

type domainRule struct {
	name, prefix, model string
	re                  *regexp.Regexp
}

// NewDomainResolver compiles the configured domain rules. The config must
// have passed Validate.
func NewDomainResolver(domains []config.Domain) (*DomainResolver, error) {
	d := &DomainResolver{}
	for _, c := range domains {
		r := domainRule{name: c.Name, prefix: c.SystemPromptPrefix, model: c.Model}
		if c.SystemPromptRegex != "" {
			re, err := regexp.Compile(c.SystemPromptRegex)
			if err != nil {
				return nil, err
			}
			r.re = re
		}
		d.rules = append(d.rules, r)
	}
	return d, nil
}

// Resolve returns the domain of a request given its X-Understudy-Domain
// header value (may be empty) and its parsed body. A header or
// metadata.task that is not a valid domain name is a 400.
//
// A new automatic domain past the bound is refused: Resolve returns "" and
// marks the request ineligible (r.Ineligible "domain_refused:rate" or
// "domain_refused:total"), so that the teacher answers it unchanged and
// nothing is logged, scored or created for it; its response carries no
// X-Understudy-Domain header and its metrics the domain "_none". An
// ineligible request's domain is never created either, so it is not
// counted against the bound.
func (d *DomainResolver) Resolve(header string, r *openai.Request) (string, error) {
	if header != "" {
		if !config.ValidDomainName(header) {
			return "", invalidRequest("X-Understudy-Domain", "Invalid X-Understudy-Domain header %q: use 1-64 characters of A-Z a-z 0-9 . _ - (not . or ..)", header)
		}
		return withShape(header, r.Shape), nil
	}
	if r.Task != "" {
		if !config.ValidDomainName(r.Task) {
			return "", invalidRequest("metadata.task", "Invalid 'metadata.task' %q: use 1-64 characters of A-Z a-z 0-9 . _ - (not . or ..)", r.Task)
		}
		return withShape(r.Task, r.Shape), nil
	}
	for _, rule := range d.rules {
		if rule.prefix != "" && !strings.HasPrefix(r.System, rule.prefix) {
			continue
		}
		if rule.re != nil && !rule.re.MatchString(r.System) {
			continue
		}
		if rule.model != "" && rule.model != r.Model {
			continue
		}
		return withShape(rule.name, r.Shape), nil
	}
	var name string
	if r.Shape != "" {
		// Rare enough not to be worth a cache of its own.
		name = Fingerprint(r.Model, r.System+"\x00"+r.Shape)
	} else {
		name = d.auto(r.Model, r.System)
	}
	if d.admit == nil || r.Ineligible != "" {
		return name, nil
	}
	if reason := d.admit.admit(name); reason != "" {
		r.Ineligible = "domain_refused:" + reason
		return "", nil
	}
	return name, nil
}

// withShape appends a named domain's shape suffix, keeping the name within
// 64 characters by shortening its first part.
func withShape(name, shape string) string {
	if shape == "" {
		return name
	}
	suffix := "." + shapeSuffix(shape)
	if len(name)+len(suffix) > 64 {
		name = name[:64-len(suffix)]
	}
	return name + suffix
}

// shapeSuffix names a shape in a domain name: "schema-" and 8 hex digits
// for a JSON schema, "json" for a JSON object, "format-" and 8 hex digits
// for an unknown format, "tools" when tools are offered, joined by "-".
func shapeSuffix(shape string) string {
	format, tools := strings.CutSuffix(shape, "+tools")
	var parts []string
	switch {
	case format == "":
	case strings.HasPrefix(format, "json_schema:"):
		parts = append(parts, "schema-"+format[len("json_schema:"):][:8])
	case strings.HasPrefix(format, "format:"):
		parts = append(parts, "format-"+format[len("format:"):][:8])
	default:
		parts = append(parts, "json")
	}
	if tools {
		parts = append(parts, "tools")
	}
	return strings.Join(parts, "-")
}

// auto returns Fingerprint(model, system), from the cache when it can.
func (d *DomainResolver) auto(model, system string) string {
	d.autosMu.RLock()
	name, ok := d.autos[model][system]
	d.autosMu.RUnlock()
	if ok {
		return name
	}
	name = Fingerprint(model, system)
	d.autosMu.Lock()
	defer d.autosMu.Unlock()
	if d.nAutos < maxAutos {
		if d.autos == nil {
			d.autos = map[string]map[string]string{}
		}
		if d.autos[model] == nil {
			d.autos[model] = map[string]string{}
		}
		if _, ok := d.autos[model][system]; !ok {
			d.autos[model][system] = name
			d.nAutos++
		}
	}
	return name
}

// Fingerprint names an automatic domain: "auto-" and 12 hex digits of a hash
// of the model and the system prompt with case and whitespace folded, so
// trivially different spellings of one prompt share a domain.
func Fingerprint(model, system string) string {
	h := sha256.New()
	h.Write([]byte(model))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(strings.Join(strings.Fields(system), " "))))
	return "auto-" + hex.EncodeToString(h.Sum(nil)[:6])
}
