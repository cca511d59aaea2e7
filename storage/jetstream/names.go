package jetstream

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// Domain names are 1-64 of [A-Za-z0-9._-] (storage.ValidDomain). In a
// subject '.' separates tokens, and a KV key is a subject too, so a
// domain's token is its name with each '.' written '=': a character no
// domain name holds, allowed in subjects and KV keys alike. The mapping
// is reversible and keeps names readable: spam.v2 is pairs.spam=v2, and
// "..." (a valid name) is "===", never an empty token.
func token(domain string) string { return strings.ReplaceAll(domain, ".", "=") }

// domainOf reverses token.
func domainOf(tok string) string { return strings.ReplaceAll(tok, "=", ".") }

// names are the streams, buckets and subjects of one deployment, all
// from Options.Prefix:
//
//	stream   <prefix>_pairs        subjects <prefix>.pairs.<token>, one per domain
//	KV       <prefix>_domains      <token> → the domain's record (JSON)
//	KV       <prefix>_routes       <token> → the router's record (its bytes)
//	KV       <prefix>_students     <token>.<version> → a version's metadata
//	objects  <prefix>_artifacts    <domain>/<version> → a version's artifact
//	KV       <prefix>_responses    <id> (see responseKey) → a kept response, with TTL
//	KV       <prefix>_lease        learner → the learner lease's holder, with its TTL
//	KV       <prefix>_replicas     <replicaKey> → a live replica and its counters, with a TTL
//	stream   <prefix>_samples      subject <prefix>.samples: shadow samples for the gate
type names struct {
	pairs       string // stream
	pairSubject string // prefix of the pairs' subjects, with the trailing '.'
	domains     string
	routes      string
	students    string
	artifacts   string
	responses   string
	lease       string
	replicas    string
	samples     string // stream
	// sampleSubject is the one subject of the samples' stream.
	sampleSubject string
}

func newNames(prefix string) names {
	return names{
		pairs:       prefix + "_pairs",
		pairSubject: prefix + ".pairs.",
		domains:     prefix + "_domains",
		routes:      prefix + "_routes",
		students:    prefix + "_students",
		artifacts:   prefix + "_artifacts",
		responses:   prefix + "_responses",
		lease:       prefix + "_lease",
		replicas:    prefix + "_replicas",
		samples:     prefix + "_samples",

		sampleSubject: prefix + ".samples",
	}
}

// subject is the subject of a domain's pairs.
func (n names) subject(domain string) string { return n.pairSubject + token(domain) }

// studentKey is the KV key of a student version's metadata.
func studentKey(domain string, version int) string {
	return token(domain) + "." + strconv.Itoa(version)
}

// artifactName is the object name of a student version's artifact.
func artifactName(domain string, version int) string {
	return domain + "/" + strconv.Itoa(version)
}

// responseKey is the KV key of a kept response. OpenAI's ids (resp_…)
// are valid keys as they are; any other id is written '=' and its
// base64url, which no plain id begins with.
func responseKey(id string) string {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
		}
	}
	return id
}

// replicaKey is the KV key of a replica's entry: its ID ("host/pid/random",
// whose host may hold any character) in base64url.
func replicaKey(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }
