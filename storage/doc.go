// Package storage owns Understudy's Badger database: pairs logged per task
// domain, domains, student versions and statistics; retention; export. Only
// domain methods are exported: *badger.DB never leaves the package.
package storage
