// Package migrations holds the SQL migrations of syncworker, in golang-migrate's
// NNNNNN_name.up.sql / NNNNNN_name.down.sql naming, embedded so that the worker
// binary carries its own schema.
package migrations

import "embed"

// FS holds every migration file of this directory.
//
//go:embed *.sql
var FS embed.FS
