"""Transcript import and export: the paper's table (CSV/TSV), SRT, WebVTT, JSON/JSONL, AnnoMI.

Submodules are imported lazily by name (``emoguide.transcripts.readers`` etc.); the common entry
points are re-exported here. Importing them into a corpus is the `ingest_transcript` stage
(`emoguide.stages.ingest_transcript`).
"""

from emoguide.transcripts.readers import ParsedTranscript, read_transcript_file
from emoguide.transcripts.timecode import format_hms, parse_time

__all__ = [
    "ParsedTranscript",
    "read_transcript_file",
    "parse_time",
    "format_hms",
    "export_corpus",
    "export_transcripts",
]


def __getattr__(name):
    if name in ("export_corpus", "export_transcripts", "write_paper_transcript", "write_srt", "write_vtt"):
        from emoguide.transcripts import writers

        return getattr(writers, name)
    raise AttributeError(name)
