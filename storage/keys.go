package storage

import (
	"crypto/sha256"

	"github.com/understudy-dev/understudy/config"

	"github.com/oklog/ulid/v2"
)

// Key layout. Every key starts with its kind and, where it belongs to one,
// its domain, so that a prefix iteration reads one domain alone:
//
//	meta/format                 format marker, written when the directory is created
//	domain/<domain>             domain record (JSON, see domainRecord)
//	label/<domain>/s<label>     stored pairs per label, labels up to 128 bytes
//	label/<domain>/h<sha256:16> the same for longer labels (the value holds the label)
//	pair/<domain>/<ulid:16>     one pair (binary, see appendPair), oldest first
//	route/<domain>              the router's routing record (routes.go)
//
// Later kinds follow the same shape, e.g. student/<domain>/<version>.
// Domain names never contain '/', so "pair/a/" is never a prefix of "pair/a.b/".
const (
	prefixPair   = "pair/"
	prefixDomain = "domain/"
	prefixLabel  = "label/"
	keyFormat    = "meta/format"

	formatVersion  = "understudy-pairlog/1"
	maxInlineLabel = 128
)

// ValidDomain reports whether name can be a task domain (see
// config.ValidDomainName).
func ValidDomain(name string) bool { return config.ValidDomainName(name) }

func pairPrefix(domain string) []byte {
	k := make([]byte, 0, len(prefixPair)+len(domain)+1)
	k = append(k, prefixPair...)
	k = append(k, domain...)
	return append(k, '/')
}

func appendPairKey(dst []byte, domain string, id ulid.ULID) []byte {
	dst = append(dst, prefixPair...)
	dst = append(dst, domain...)
	dst = append(dst, '/')
	return append(dst, id[:]...)
}

// pairKeyID returns the ULID at the end of a pair key.
func pairKeyID(key []byte) (ulid.ULID, bool) {
	var id ulid.ULID
	if len(key) < len(id) {
		return id, false
	}
	copy(id[:], key[len(key)-len(id):])
	return id, true
}

func domainKey(domain string) []byte { return []byte(prefixDomain + domain) }

func labelPrefix(domain string) []byte { return []byte(prefixLabel + domain + "/") }

func labelKey(domain, label string) []byte {
	k := make([]byte, 0, len(prefixLabel)+len(domain)+2+min(len(label), maxInlineLabel))
	k = append(k, prefixLabel...)
	k = append(k, domain...)
	k = append(k, '/')
	if len(label) <= maxInlineLabel {
		k = append(k, 's')
		return append(k, label...)
	}
	h := sha256.Sum256([]byte(label))
	k = append(k, 'h')
	return append(k, h[:16]...)
}
