"""The Batch API: batches of chat, completions (and responses) requests run in the background."""
