-- Version 2: the claim token and the checkpoint kind.
ALTER TABLE jobs ADD COLUMN claim_token TEXT;
-- Leases taken by a version-1 worker get a token of their own, so no claim of this version can
-- match them; they expire and are recovered like any other.
UPDATE jobs SET claim_token = lower(hex(randomblob(8))) WHERE lease_owner IS NOT NULL;
ALTER TABLE checkpoints ADD COLUMN kind TEXT NOT NULL DEFAULT 'epoch';
