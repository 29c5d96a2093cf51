-- Version 7: jobs on several machines. A gang is one claim of a job trained by several
-- workers: the leader (the worker that claimed it) says where its ranks meet, and other
-- workers take the remaining node ranks, each once. Rows of an earlier claim are dead: a join
-- matches the job's current claim token.
CREATE TABLE gangs (job_id TEXT PRIMARY KEY, claim_token TEXT NOT NULL, nodes INTEGER NOT NULL, devices INTEGER NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL, opened_at REAL NOT NULL);
CREATE TABLE gang_members (job_id TEXT NOT NULL, claim_token TEXT NOT NULL, node_rank INTEGER NOT NULL, worker_id TEXT NOT NULL, joined_at REAL NOT NULL, PRIMARY KEY (job_id, claim_token, node_rank));
