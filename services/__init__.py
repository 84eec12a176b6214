"""Tailor's domain: data loading, embedding, retrieval, ranking, copy. No Ray, no gRPC."""
