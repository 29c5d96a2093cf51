-- Version 3: fine-tuned models looked up by name, and the deleted ones.
CREATE INDEX jobs_by_model ON jobs (fine_tuned_model) WHERE fine_tuned_model IS NOT NULL;
CREATE TABLE deleted_models (name TEXT PRIMARY KEY, organization TEXT NOT NULL, job_id TEXT NOT NULL, deleted_at INTEGER NOT NULL);
CREATE INDEX deleted_models_by_org ON deleted_models (organization);
