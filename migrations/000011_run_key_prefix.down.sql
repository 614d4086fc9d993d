ALTER TABLE runs DROP COLUMN key_prefix;
