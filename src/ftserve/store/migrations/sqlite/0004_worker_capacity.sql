-- Version 4: jobs on several devices, and the workers' capacity the queue is claimed against.
-- The devices a job trains on (0: "auto", every device of the worker that takes it).
ALTER TABLE jobs ADD COLUMN devices INTEGER NOT NULL DEFAULT 1;
-- Each worker's devices (GPUs, or CPU processes on a CPU worker), how many are free, what
-- "auto" takes there, and when it last said so (a row not renewed within a lease is stale).
CREATE TABLE workers (id TEXT PRIMARY KEY, devices INTEGER NOT NULL, devices_free INTEGER NOT NULL, auto_devices INTEGER NOT NULL, seen_at REAL NOT NULL);
