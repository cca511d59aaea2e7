package storage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Pair values are a compact binary record, written and read on every pair,
// so they avoid encoding/json (about 5x slower and larger for this shape):
//
//	byte     version (1)
//	string   label          (first, so retention reads it without decoding the rest)
//	varint   time, Unix nanoseconds
//	string   model, input, system
//	string   messages       (raw JSON; see flags for nil)
//	string   answer
//	varint   prompt tokens, completion tokens, teacher latency (ns)
//	byte     flags: 1 stream, 2 messages present, 4 deferred
//
// A string is a uvarint length followed by its bytes. The ID and the domain
// are not repeated: they are the key.
const pairCodecV1 = 1

const (
	flagStream   = 1 << 0
	flagMessages = 1 << 1
	flagDeferred = 1 << 2
)

var errCorruptPair = errors.New("corrupt pair record")

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func pairSize(p *Pair) int {
	return 1 + 6*binary.MaxVarintLen64 + 3*binary.MaxVarintLen64 + 2 +
		len(p.Label) + len(p.Model) + len(p.Input) + len(p.System) + len(p.Messages) + len(p.Answer) + 6
}

func appendPair(dst []byte, p *Pair) []byte {
	dst = append(dst, pairCodecV1)
	dst = appendString(dst, p.Label)
	dst = binary.AppendVarint(dst, p.Time.UnixNano())
	dst = appendString(dst, p.Model)
	dst = appendString(dst, p.Input)
	dst = appendString(dst, p.System)
	dst = binary.AppendUvarint(dst, uint64(len(p.Messages)))
	dst = append(dst, p.Messages...)
	dst = appendString(dst, p.Answer)
	dst = binary.AppendVarint(dst, int64(p.PromptTokens))
	dst = binary.AppendVarint(dst, int64(p.CompletionTokens))
	dst = binary.AppendVarint(dst, int64(p.TeacherLatency))
	var flags byte
	if p.Stream {
		flags |= flagStream
	}
	if p.Messages != nil {
		flags |= flagMessages
	}
	if p.Deferred {
		flags |= flagDeferred
	}
	return append(dst, flags)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorruptPair
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorruptPair
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errCorruptPair
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// string copies: the result outlives the Badger transaction.
func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errCorruptPair
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// decodePair decodes v into p, copying everything it keeps. ID and Domain are
// left to the caller, who has the key.
func decodePair(v []byte, p *Pair) error {
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != pairCodecV1 {
		return fmt.Errorf("%w: unknown version %d", errCorruptPair, ver)
	}
	p.Label = d.string()
	p.Time = time.Unix(0, d.varint()).UTC()
	p.Model = d.string()
	p.Input = d.string()
	p.System = d.string()
	msgs := d.bytes()
	p.Answer = d.string()
	p.PromptTokens = int(d.varint())
	p.CompletionTokens = int(d.varint())
	p.TeacherLatency = time.Duration(d.varint())
	flags := d.byte()
	if d.err != nil {
		return d.err
	}
	p.Stream = flags&flagStream != 0
	p.Deferred = flags&flagDeferred != 0
	p.Messages = nil
	if flags&flagMessages != 0 {
		p.Messages = append(json.RawMessage{}, msgs...)
	}
	return nil
}

// AppendPairRecord appends p's binary record, as described above (neither
// its ID nor its domain), to dst. It is the pair format of every backend:
// the NATS JetStream one stores it as a message's payload.
func AppendPairRecord(dst []byte, p *Pair) []byte { return appendPair(dst, p) }

// DecodePairRecord decodes a record written by AppendPairRecord into p,
// copying what it keeps; p's ID and Domain are left to the caller.
func DecodePairRecord(v []byte, p *Pair) error { return decodePair(v, p) }

// decodePairLabel reads only the label of an encoded pair.
func decodePairLabel(v []byte) (string, error) {
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != pairCodecV1 {
		return "", fmt.Errorf("%w: unknown version %d", errCorruptPair, ver)
	}
	l := d.string()
	return l, d.err
}

// Label counts: uvarint count followed by the label itself (the key may hold
// only a hash of it).
func appendLabelCount(dst []byte, label string, n int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(n))
	return append(dst, label...)
}

func decodeLabelCount(v []byte) (label string, n int64, err error) {
	c, k := binary.Uvarint(v)
	if k <= 0 {
		return "", 0, errors.New("corrupt label count")
	}
	return string(v[k:]), int64(c), nil
}

// domainRecord is the stored form of a domain, as JSON: written at most once
// per batch and per domain, read rarely, and extended by later issues.
// Label counts are separate keys (see keys.go) so that a domain with many
// distinct labels does not rewrite them all on every batch.
type domainRecord struct {
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
	Pairs     int64             `json:"pairs"`
	Logged    int64             `json:"logged"`
	Settings  map[string]string `json:"settings,omitempty"`
	// LegacyState is the copy of the routing state that releases before
	// the routing record had a key of its own kept here; migrateRoutes
	// clears it.
	LegacyState string `json:"state,omitempty"`
}

func (r *domainRecord) clone() domainRecord {
	c := *r
	if r.Settings != nil {
		c.Settings = make(map[string]string, len(r.Settings))
		for k, v := range r.Settings {
			c.Settings[k] = v
		}
	}
	return c
}
