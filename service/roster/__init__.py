"""Roster storage: people and faces in the database (the source of truth), their encodings in a
FAISS index that follows it, and the aligned crops kept for re-encoding. No pipeline, no decisions."""
