package config

import "go.yaml.in/yaml/v3"

// MarshalRedacted renders the configuration as YAML with every secret masked.
func (c *Config) MarshalRedacted() ([]byte, error) {
	r := *c
	r.Admin.Token = mask(r.Admin.Token)
	r.Teacher.APIKey = mask(r.Teacher.APIKey)
	r.Gateway.APIKeys = make([]string, len(c.Gateway.APIKeys))
	for i, k := range c.Gateway.APIKeys {
		r.Gateway.APIKeys[i] = mask(k)
	}
	return yaml.Marshal(&r)
}

// mask hides a secret, keeping only enough to tell two apart.
func mask(s string) string {
	switch {
	case s == "":
		return ""
	case len(s) <= 8:
		return "****"
	default:
		return "****" + s[len(s)-4:]
	}
}
