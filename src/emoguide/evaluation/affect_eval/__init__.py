"""`emoguide evaluate affect`: the face_* and voice_* channels against labelled clips.

- `labels`: the labels CSV, and labels built from RAVDESS / MEAD file names;
- `run`: channel values per labelled item, accuracy / macro-F1, arousal and valence AUC,
  correlations, the CSV/JSON report.

See docs/evaluate.md.
"""
