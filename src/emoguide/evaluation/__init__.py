"""Evaluation: figures (and, later, statistics, the LLM judge and the rating study).

`figures` needs matplotlib (imported lazily, Agg backend, no pyplot state); figures never draw
video frames.
"""
