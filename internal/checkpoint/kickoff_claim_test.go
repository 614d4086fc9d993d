package checkpoint

import (
	"errors"
	"testing"
	"time"
)

// A claim of a kick-off is no record: KickoffOf does not find it, a second
// claim returns the first one's time, and the record completes it; a
// later record leaves the first as it is, and so does an unclaim, which
// removes a claim that is only one.
func TestClaimKickoff(t *testing.T) {
	e := setup(t)
	ctx := t.Context()
	run := e.create(t, "k", 10, 5, 1)
	k := Kickoff{TaskID: "kickoff:e:2", Entry: "e", Job: "test", Fire: time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)}
	at, err := e.store.ClaimKickoff(ctx, k)
	if err != nil || at.IsZero() {
		t.Fatalf("ClaimKickoff = %v, %v", at, err)
	}
	if _, err := e.store.KickoffOf(ctx, k.TaskID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("KickoffOf a claim = %v, want ErrNotFound", err)
	}
	again, err := e.store.ClaimKickoff(ctx, k)
	if err != nil || !again.Equal(at) {
		t.Fatalf("ClaimKickoff again = %v, %v; want the first claim's %v", again, err, at)
	}
	first := k
	first.How, first.RunID = "created", run.ID
	if err := e.store.RecordKickoff(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := k
	second.How = "skipped"
	if err := e.store.RecordKickoff(ctx, second); err != nil {
		t.Fatal(err)
	}
	got, err := e.store.KickoffOf(ctx, k.TaskID)
	if err != nil || got.How != "created" || got.RunID != run.ID {
		t.Errorf("KickoffOf = %+v, %v; want the first record", got, err)
	}
	if err := e.store.UnclaimKickoff(ctx, k.TaskID); err != nil {
		t.Fatal(err)
	}
	if got, err := e.store.KickoffOf(ctx, k.TaskID); err != nil || got.How != "created" {
		t.Errorf("KickoffOf after an unclaim of a record = %+v, %v; want the record", got, err)
	}
	other := Kickoff{TaskID: "kickoff:e:3", Entry: "e", Job: "test", Fire: k.Fire}
	if _, err := e.store.ClaimKickoff(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := e.store.UnclaimKickoff(ctx, other.TaskID); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM kickoffs WHERE task_id = $1`, other.TaskID); n != 0 {
		t.Errorf("%d rows of an unclaimed kick-off, want 0", n)
	}

	// An earlier attempt claimed, started a run and failed to record it; a
	// retry refused (the job removed meanwhile) keeps that claim.
	started := Kickoff{TaskID: "kickoff:e:4", Entry: "e", Job: "test", Fire: k.Fire}
	claim, err := e.store.ClaimKickoff(ctx, started)
	if err != nil {
		t.Fatal(err)
	}
	e.create(t, "k4", 10, 5, 1)
	if err := e.store.UnclaimKickoff(ctx, started.TaskID); err != nil {
		t.Fatal(err)
	}
	if again, err := e.store.ClaimKickoff(ctx, started); err != nil || !again.Equal(claim) {
		t.Errorf("claim after an unclaim with a run started since = %v, %v; want the first claim's %v kept", again, err, claim)
	}
}
