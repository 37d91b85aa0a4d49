"""One module per stage: each adapts library code (which knows nothing of the corpus) to the
`emoguide.pipeline.Stage` interface. See docs/architecture.md."""
