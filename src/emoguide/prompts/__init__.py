"""Targets, dialogue contexts and the prompt conditions (paper, Appendix A)."""
