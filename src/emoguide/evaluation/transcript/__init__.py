"""`emoguide evaluate transcript`: the corpus's transcripts against the user's references.

- `references`: RTTM, STM, CHAT (.cha) readers and the shared `Reference` shape (the paper's
  table, SRT/WebVTT, JSON and AnnoMI come through `emoguide.transcripts.readers`);
- `metrics`: WER, DER/JER (pyannote.metrics), word speaker attribution, role accuracy, utterance
  boundary precision/recall;
- `run`: session matching, per-session and overall figures, the CSV/JSON report.

See docs/evaluate.md.
"""
