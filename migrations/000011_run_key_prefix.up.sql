-- What goes before the key of each record a run of pages lands: the run's
-- values of its job's key_params, frozen when the run is created, so that a
-- change of the job's definition does not re-key a run half-way.
ALTER TABLE runs ADD COLUMN key_prefix text NOT NULL DEFAULT '';
