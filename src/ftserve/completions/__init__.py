"""Chat and legacy text completions served from the inference process."""
