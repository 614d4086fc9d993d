package db

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes this package tells apart.
const (
	codeUndefinedTable    = "42P01"
	codeDuplicateDatabase = "42P04"
	codeUniqueViolation   = "23505"
	codeCheckViolation    = "23514"
)

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func isUndefinedTable(err error) bool    { return sqlState(err) == codeUndefinedTable }
func isDuplicateDatabase(err error) bool { return sqlState(err) == codeDuplicateDatabase }

// IsUniqueViolation reports whether err is a unique constraint violation.
func IsUniqueViolation(err error) bool { return sqlState(err) == codeUniqueViolation }

// IsCheckViolation reports whether err is a check constraint violation.
func IsCheckViolation(err error) bool { return sqlState(err) == codeCheckViolation }
