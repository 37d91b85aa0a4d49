"""emoguide: emotion-guided generative therapeutic interventions from recorded sessions.

Research use only. Generated interventions are never to be shown to a patient.
"""

__version__ = "0.1.0"

RESEARCH_NOTICE = (
    "Research use only: generated interventions are for study by experts and must never be "
    "shown to a patient."
)
