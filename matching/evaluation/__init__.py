"""Relevance evaluation: a labelled set written from the plan in hotline-style Chinese."""
