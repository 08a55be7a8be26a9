"""Problem banks: ingest, embedders, the embedding store and the FAISS index."""
