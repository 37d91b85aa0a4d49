"""The LLM judge (`emoguide judge`): G-Eval scoring of generated interventions.

- `steps`: the evaluation steps per criterion, generated once (auto chain-of-thought) or taken
  from the packaged hand-written default, frozen in ``<corpus>/judge/steps.toml``.
- `prompt`: one blinded prompt per criterion (never the generation prompt, model or condition).
- `scoring`: a score distribution from token log-probabilities, or from n samples.
- `run`: the judging itself, cached, resumable and concurrent, writing ``judgments.parquet``
  (the corpus stage `emoguide.stages.judge` wraps it).

Nothing heavy is imported here.
"""
