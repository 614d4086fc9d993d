package db

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/syncworker/syncworker/migrations"
)

// Every migration has an up and a down file in golang-migrate's naming, and
// LatestVersion is the newest.
func TestMigrationFiles(t *testing.T) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^(\d{6})_[a-z0-9_]+\.(up|down)\.sql$`)
	pairs := map[string]map[string]bool{}
	for _, n := range names {
		m := re.FindStringSubmatch(n)
		if m == nil {
			t.Errorf("migration %s is not named NNNNNN_name.up.sql / .down.sql", n)
			continue
		}
		if pairs[m[1]] == nil {
			pairs[m[1]] = map[string]bool{}
		}
		pairs[m[1]][m[2]] = true
	}
	for v, p := range pairs {
		if !p["up"] || !p["down"] {
			t.Errorf("migration %s lacks its up or down file", v)
		}
	}
	latest, err := LatestVersion()
	if err != nil {
		t.Fatal(err)
	}
	if want := len(pairs); int(latest) != want {
		t.Errorf("LatestVersion = %d, want %d (versions numbered 1..n)", latest, want)
	}
	if !strings.HasPrefix(names[0], "000001_") {
		t.Errorf("first migration %s", names[0])
	}
}
