package schedule_test

import (
	"testing"
	"time"

	"github.com/syncworker/syncworker/internal/checkpoint"
	"github.com/syncworker/syncworker/internal/config"
	"github.com/syncworker/syncworker/internal/harness"
	"github.com/syncworker/syncworker/internal/simulator"
	"github.com/syncworker/syncworker/internal/tasks"
)

// A kick-off that started its run but could not record it (Postgres
// failing for a moment, or the worker killed between the two) is retried;
// the run, a one-page ETL pull, has completed by then. The retry must find
// the fire's run, not start the job's next generation: one fire, one run.
func TestKickoffRetriedAfterItsRunCompletedStartsNoSecondRun(t *testing.T) {
	h, _ := hourly(t)
	// The first record of a kick-off waits for the run to complete, then
	// fails: the attempt that started the run fails after the start, and
	// its retry comes after the run completed.
	if _, err := h.DB.Pool.Exec(t.Context(), `
		CREATE SEQUENCE kickoffs_fail_seq;
		CREATE FUNCTION kickoffs_fail() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.how <> '' AND nextval('kickoffs_fail_seq') = 1 THEN
				FOR i IN 1..400 LOOP
					EXIT WHEN EXISTS (SELECT 1 FROM runs WHERE status = 'completed');
					PERFORM pg_sleep(0.05);
				END LOOP;
				RAISE EXCEPTION 'injected: the record of the kick-off fails';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER kickoffs_fail BEFORE INSERT ON kickoffs FOR EACH ROW EXECUTE FUNCTION kickoffs_fail();`); err != nil {
		t.Fatal(err)
	}
	h.StartWorker("a")
	ks := waitKickoffs(t, h, 1, 60*time.Second)
	time.Sleep(time.Second) // a second run, if any, completes
	if n := h.Count(`SELECT count(*) FROM runs`); n != 1 {
		t.Errorf("one fire started %d runs, want 1 (kick-offs %+v)", n, ks)
	}
	if n := h.Count(`SELECT count(*) FROM runs WHERE status = $1`, checkpoint.StatusCompleted); n < 1 {
		t.Errorf("no run completed")
	}
	if len(ks) == 1 && ks[0].result.How == tasks.Created && ks[0].result.Run != h.Count(`SELECT min(id) FROM runs`) {
		t.Errorf("the kick-off reports run %d created, not the fire's first run", ks[0].result.Run)
	}
}

// An operator who deletes a fire's pending kick-off task in asynqmon (to
// call the fire off) sees it stay deleted: the leader does not take the
// deletion for Redis losing its data (the mark that the task was enqueued
// is still there) and does not enqueue the fire again.
func TestKickoffDeletedInAsynqmonStaysDeleted(t *testing.T) {
	h, id := hourly(t)
	pendingKickoff(t, h, id)
	if err := h.Inspector.DeleteTask(tasks.Queue, id); err != nil { // asynqmon's delete
		t.Fatal(err)
	}
	if err := h.Inspector.UnpauseQueue(tasks.Queue); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // ten polls
	if n := h.Count(`SELECT count(*) FROM runs`); n != 0 {
		t.Errorf("the deleted fire started %d runs, want none", n)
	}
	if info, err := h.Inspector.GetTaskInfo(tasks.Queue, id); err == nil {
		t.Errorf("the deleted kick-off task is back: %s", info.State)
	}
}

// hourly returns a harness whose schedule fires pull at every full hour,
// which a new leader fires at once (its catch-up covers the hour's fire),
// and the ID of the kick-off task of the hour's fire. Close to the next
// hour it waits for it, so that no fire comes in the middle of a test.
func hourly(t *testing.T) (*harness.Harness, string) {
	t.Helper()
	h := harness.New(t, harness.Options{Jobs: pullJob, Sim: simulator.Config{Records: 10}, Configure: func(c *config.Config) {
		c.Schedule.PollInterval = 200 * time.Millisecond
		c.Schedule.CatchUp = 2 * time.Hour
		c.Schedule.Entries = []config.ScheduleEntry{{Name: "hourly", Cron: "CRON_TZ=UTC 0 * * * *", Job: "pull", Overlap: config.OverlapAllow}}
	}})
	fire := time.Now().UTC().Truncate(time.Hour)
	if time.Until(fire.Add(time.Hour)) < time.Minute {
		fire = fire.Add(time.Hour)
		time.Sleep(time.Until(fire.Add(time.Second)))
	}
	return h, "kickoff:hourly:" + fire.Format("20060102T150405Z")
}

// pendingKickoff pauses the queue, so that no worker runs a task, starts
// worker a and waits until it has enqueued the kick-off task id.
func pendingKickoff(t *testing.T, h *harness.Harness, id string) {
	t.Helper()
	if err := h.Inspector.PauseQueue(tasks.Queue); err != nil {
		t.Fatal(err)
	}
	h.StartWorker("a")
	waitFor(t, 10*time.Second, "the fire's kick-off task enqueued", func() bool {
		_, err := h.Inspector.GetTaskInfo(tasks.Queue, id)
		return err == nil
	})
}
