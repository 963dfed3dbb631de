"""Participant and researcher web app of smart-study (Flask). Never imports torch."""
