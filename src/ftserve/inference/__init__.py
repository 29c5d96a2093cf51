"""Serving models: the API-side client and the inference process that runs them."""
